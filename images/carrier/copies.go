package main

// The copy relay of a router (GEFYRA_CARRIER_COPIES=SOCKET_PATH, set on routers only): nginx
// hands it each mirrored request and gets its answer at once; the relay sends the copy on to the
// developer's container from a bounded queue per destination. So a container that is slow, stopped
// at a breakpoint, paused or gone never holds back a caller: nginx finishes a request only once its
// copies are answered, and the next request of a keep-alive connection waits for that.

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	// Headers that nginx sets on a copy (replacing any a caller sent): where it goes ("IP:PORT",
	// checked by the operator before it wrote the configuration) and whether that speaks HTTP/2.
	copyToHeader    = "X-Gefyra-Copy-To"
	copyProtoHeader = "X-Gefyra-Copy-Proto"
	copyQueue       = 256              // copies waiting per destination; more are dropped
	copyMaxBody     = 16 << 20         // a larger body is not copied
	copyTimeout     = 30 * time.Second // for the developer's container to answer one copy
	copyIdle        = time.Minute      // a destination's sender ends after this long without copies
)

type copyItem struct {
	method, uri, host string
	header            http.Header
	body              []byte
}

type copyRelay struct {
	mu      sync.Mutex
	queues  map[string]chan copyItem // by destination and protocol
	dropped int
}

// serveCopies runs the relay on a Unix socket at path: only this pod (nginx) reaches it.
func serveCopies(path string) {
	relay := &copyRelay{queues: map[string]chan copyItem{}}
	_ = os.Remove(path) // left by an earlier run of this container
	listener, err := net.Listen("unix", path)
	if err != nil {
		log.Printf("copy relay: %v", err)
		os.Exit(1)
	}
	server := &http.Server{Handler: relay, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("copy relay on %s", path)
	if err := server.Serve(listener); err != nil {
		log.Printf("copy relay: %v", err)
		os.Exit(1)
	}
}

func (c *copyRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	to, proto := r.Header.Get(copyToHeader), r.Header.Get(copyProtoHeader)
	if host, port, err := net.SplitHostPort(to); err != nil || net.ParseIP(host) == nil || !validPort(port) {
		http.Error(w, "no copy destination", http.StatusBadRequest)
		return
	}
	if !copyProtos[proto] {
		http.Error(w, "no copy protocol", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, copyMaxBody+1))
	w.WriteHeader(http.StatusNoContent)
	if err != nil || len(body) > copyMaxBody {
		c.drop("its body could not be read or is larger than 16 MiB")
		return
	}
	header := r.Header.Clone()
	header.Del(copyToHeader)
	header.Del(copyProtoHeader)
	header.Del("Connection")
	c.enqueue(to, proto, copyItem{method: r.Method, uri: r.RequestURI, host: r.Host, header: header, body: body})
}

func validPort(text string) bool {
	port, err := strconv.Atoi(text)
	return err == nil && port > 0 && port < 65536
}

// copyProtos are how a copy reaches the developer: cleartext HTTP/1.1 or HTTP/2, or TLS (HTTPS
// ports), where ALPN chooses.
var copyProtos = map[string]bool{"http/1.1": true, "h2c": true, "https": true}

func (c *copyRelay) enqueue(to, proto string, item copyItem) {
	key := to + " " + proto
	c.mu.Lock()
	queue, running := c.queues[key]
	if !running {
		queue = make(chan copyItem, copyQueue)
		c.queues[key] = queue
		go c.send(key, to, proto, queue)
	}
	// Under the lock: a sender that ends when idle does so under it too, so no copy goes into a
	// queue that nobody reads any more.
	select {
	case queue <- item:
		c.mu.Unlock()
	default:
		c.mu.Unlock()
		c.drop("the queue for " + to + " is full")
	}
}

func (c *copyRelay) drop(why string) {
	c.mu.Lock()
	c.dropped++
	dropped := c.dropped
	c.mu.Unlock()
	if dropped&(dropped-1) == 0 { // 1, 2, 4, 8, ...: a slow destination does not flood the log
		log.Printf("copy dropped (%d so far): %s", dropped, why)
	}
}

// send delivers one destination's copies in order, one at a time.
func (c *copyRelay) send(key, to, proto string, queue chan copyItem) {
	transport := &http.Transport{MaxIdleConnsPerHost: 2, Protocols: new(http.Protocols)}
	scheme := "http://"
	switch proto {
	case "h2c":
		transport.Protocols.SetUnencryptedHTTP2(true)
	case "https":
		// The developer's own container, through gefyra's encrypted tunnel: its certificate is
		// whatever it serves, as for the requests the router passes it.
		scheme = "https://"
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec
		transport.Protocols.SetHTTP1(true)
		transport.Protocols.SetHTTP2(true)
	default:
		transport.Protocols.SetHTTP1(true)
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: copyTimeout, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	failures := 0
	for {
		var item copyItem
		select {
		case item = <-queue:
		case <-time.After(copyIdle):
			c.mu.Lock()
			if len(queue) == 0 {
				delete(c.queues, key)
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			continue
		}
		req, err := http.NewRequest(item.method, scheme+to+item.uri, bytes.NewReader(item.body))
		if err != nil {
			continue
		}
		req.Header, req.Host = item.header, item.host
		resp, err := client.Do(req)
		if err != nil {
			if failures++; failures&(failures-1) == 0 {
				log.Printf("copy to %s failed (%d in a row): %v", to, failures, err)
			}
			continue
		}
		failures = 0
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
