// testserver is the test workload of gefyra's development cluster: one static binary that serves
// HTTP, a line-based TCP echo and a UDP echo, and also acts as their client, so that tests need no
// curl, netcat or python inside images.
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args)
	case "tcp-send":
		err = send("tcp", args)
	case "udp-send":
		err = send("udp", args)
	case "tcp-hold":
		err = hold(args)
	case "latency":
		err = latency(args)
	case "tally":
		err = tally(args)
	case "upload":
		err = upload(args)
	case "download":
		err = download(args)
	case "upgrade":
		err = upgrade(args)
	case "grpc":
		err = grpcCall(args)
	case "watch":
		err = watch(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  testserver serve [--http :8080] [--tcp :9000] [--udp :9001]
  testserver serve ... [--https :8443]                 (or HTTPS_ADDR; TLS_CERT/TLS_KEY: its certificate's files, else self-signed)
  testserver get URL [--timeout 5s] [-H 'NAME: VALUE' ...] [--ca-pem PEM]
  testserver tally URL COUNT [--rate N] [--keepalive] [--h2c [--parallel N]] [--variant 'NAME: VALUE' ...]
                                   (COUNT requests, variants in turn; JSON: answers by variant and server, failures, latency;
                                    --h2c: all over one cleartext HTTP/2 connection, N streams at a time)
  testserver watch URL PREFIX [--timeout 60s] [-H 'NAME: VALUE' ...]
                                   (a GET every 10 ms, each on a new connection, until an answer starts with
                                    PREFIX; prints that moment as Unix time in seconds)
  testserver grpc URL unary|stream MESSAGE [-H 'NAME: VALUE' ...]
                                   (a gRPC call of gefyra.test.Echo over h2c; prints each answer, then grpc-status)
  testserver upload URL BYTES [-H 'NAME: VALUE' ...]   (a chunked POST of BYTES bytes; prints the answer and sent_sha256=)
  testserver download URL                              (GET, e.g. /bytes?n=N; prints received= and sha256=)
  testserver upgrade URL [-H 'NAME: VALUE' ...]        (an HTTP Upgrade, then a line echoed over the connection)
  testserver tcp-send ADDR LINE
  testserver udp-send ADDR MESSAGE
  testserver tcp-hold ADDR SECONDS                     (one connection: a line, SECONDS of silence, a line)
  testserver latency URL COUNT [-H 'NAME: VALUE' ...]   (prints p50 and p99 in ms, one new connection per request)`)
	os.Exit(2)
}

// identity names the answering instance: the MESSAGE variable if set, else the host name.
func identity() string {
	if m := os.Getenv("MESSAGE"); m != "" {
		return m
	}
	h, _ := os.Hostname()
	return h
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	httpAddr := fs.String("http", ":8080", "HTTP listen address (empty: off)")
	tcpAddr := fs.String("tcp", ":9000", "TCP line echo listen address (empty: off)")
	udpAddr := fs.String("udp", ":9001", "UDP echo listen address (empty: off)")
	httpsAddr := fs.String("https", os.Getenv("HTTPS_ADDR"), "HTTPS listen address (default: HTTPS_ADDR, empty: "+
		"off); TLS_CERT and TLS_KEY name the certificate's files, else a self-signed one is made")
	_ = fs.Parse(args)
	errs := make(chan error, 4)
	if *httpAddr != "" {
		go func() { errs <- serveHTTP(*httpAddr) }()
	}
	if *httpsAddr != "" {
		go func() { errs <- serveHTTPS(*httpsAddr) }()
	}
	if *tcpAddr != "" {
		go func() { errs <- serveTCP(*tcpAddr) }()
	}
	if *udpAddr != "" {
		go func() { errs <- serveUDP(*udpAddr) }()
	}
	log.Printf("serving as %q: http %s, https %s, tcp %s, udp %s", identity(), *httpAddr, *httpsAddr, *tcpAddr, *udpAddr)
	return <-errs
}

func serveHTTP(addr string) error {
	// HTTP/1.x and cleartext HTTP/2 (prior knowledge) on one port, as a gRPC server's port is.
	server := &http.Server{Addr: addr, Handler: handler(), Protocols: new(http.Protocols)}
	server.Protocols.SetHTTP1(true)
	server.Protocols.SetUnencryptedHTTP2(true)
	return server.ListenAndServe()
}

// serveHTTPS serves the same over TLS (HTTP/1.1 and HTTP/2 by ALPN) with the certificate in the
// files TLS_CERT and TLS_KEY, or a self-signed one made now.
func serveHTTPS(addr string) error {
	certificate, err := serverCertificate()
	if err != nil {
		return err
	}
	server := &http.Server{Addr: addr, Handler: handler(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{certificate}, MinVersion: tls.VersionTLS12}}
	return server.ListenAndServeTLS("", "")
}

func serverCertificate() (tls.Certificate, error) {
	if certFile, keyFile := os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"); certFile != "" {
		return tls.LoadX509KeyPair(certFile, keyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: identity()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, strings.Join(os.Environ(), "\n"))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		fmt.Fprintf(w, "hello from %s received=%d chunked=%v err=%v sha256=%x\n", identity(), n,
			len(r.TransferEncoding) > 0, err, sum.Sum(nil))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || size < 0 {
			http.Error(w, "n must be a number of bytes", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_ = writePattern(w, size)
	})
	mux.HandleFunc("/upgrade", serveUpgrade)
	mux.HandleFunc("/gefyra.test.Echo/", serveGRPC)
	logRequests := os.Getenv("LOG_REQUESTS") != ""
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if logRequests { // what reached it, for tests: the body's size and digest
			sum := sha256.New()
			n, _ := io.Copy(sum, r.Body)
			log.Printf("request %s %s %s x-dev=%q body=%d sha256=%x", r.Method, r.URL.RequestURI(), r.Proto,
				r.Header.Get("X-Dev"), n, sum.Sum(nil))
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		fmt.Fprintf(w, "hello from %s path=%s proto=%s scheme=%s\n", identity(), r.URL.Path, r.Proto, scheme)
	})
	return mux
}

// serveGRPC answers gefyra.test.Echo's two methods with gRPC's framing (a byte, a 4-byte length,
// the message; the status in trailers), messages being plain text instead of protobuf:
// Unary answers "hello from ID: MESSAGE"; Stream answers MESSAGE (a number) times, 50 ms apart.
func serveGRPC(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		http.Error(w, "gRPC needs HTTP/2 and content-type application/grpc", http.StatusUnsupportedMediaType)
		return
	}
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	status := func(code int, message string) {
		w.Header().Set("Grpc-Status", strconv.Itoa(code))
		w.Header().Set("Grpc-Message", message)
	}
	message, err := readGRPCMessage(r.Body)
	if err != nil {
		status(3, "bad request message: "+err.Error())
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/gefyra.test.Echo/") {
	case "Unary":
		_, _ = w.Write(grpcFrame(fmt.Sprintf("hello from %s: %s", identity(), message)))
	case "Stream":
		count, err := strconv.Atoi(message)
		if err != nil || count < 0 || count > 1000 {
			status(3, "the message must be a count of answers (0-1000)")
			return
		}
		for i := 1; i <= count; i++ {
			_, _ = w.Write(grpcFrame(fmt.Sprintf("hello from %s #%d", identity(), i)))
			w.(http.Flusher).Flush()
			if i < count {
				time.Sleep(50 * time.Millisecond)
			}
		}
	default:
		status(12, "unknown method "+r.URL.Path)
		return
	}
	status(0, "")
}

func grpcFrame(message string) []byte {
	frame := make([]byte, 5+len(message))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(message)))
	copy(frame[5:], message)
	return frame
}

// readGRPCMessage reads one length-prefixed gRPC message (uncompressed, at most 1 MiB).
func readGRPCMessage(r io.Reader) (string, error) {
	var prefix [5]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return "", err
	}
	size := binary.BigEndian.Uint32(prefix[1:])
	if prefix[0] != 0 || size > 1<<20 {
		return "", fmt.Errorf("compressed or larger than 1 MiB")
	}
	message := make([]byte, size)
	_, err := io.ReadFull(r, message)
	return string(message), err
}

// watch polls URL until an answer starts with PREFIX and prints when (for the benchmarks' switch
// times: started before the switch, it sees its first moment, whatever the switch's command does).
func watch(args []string) error {
	given, timeout, hs := clientFlags("watch", args, 2, 60*time.Second)
	url, prefix := given[0], given[1]
	client := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		req, err := request("GET", url, nil, hs)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if strings.HasPrefix(string(body), prefix) {
			fmt.Printf("%.3f\n", float64(time.Now().UnixMicro())/1e6)
			return nil
		}
	}
	return fmt.Errorf("no answer starting with %q within %v", prefix, timeout)
}

// clientFlags parses a client command's arguments: `positional` ones first (fewer: usage), then
// --timeout (default wait) and -H 'NAME: VALUE' (repeatable).
func clientFlags(name string, args []string, positional int, wait time.Duration) ([]string, time.Duration, headers) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	timeout := fs.Duration("timeout", wait, "how long to wait")
	var hs headers
	fs.Var(&hs, "H", "header 'NAME: VALUE' (repeatable)")
	caPEM := fs.String("ca-pem", "", "HTTPS: trust only the CAs of this PEM text")
	if len(args) < positional {
		usage()
	}
	_ = fs.Parse(args[positional:])
	if *caPEM != "" {
		trusted = x509.NewCertPool()
		if !trusted.AppendCertsFromPEM([]byte(*caPEM)) {
			fmt.Fprintln(os.Stderr, "testserver: --ca-pem holds no certificate")
			os.Exit(2)
		}
	}
	return args[:positional], *timeout, hs
}

// trusted are the CAs that HTTPS servers must chain to (--ca-pem); nil: the system's.
var trusted *x509.CertPool

// httpClient is a client with the timeout that verifies HTTPS servers against trusted.
func httpClient(timeout time.Duration) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: trusted}
	return &http.Client{Timeout: timeout, Transport: transport}
}

// h2cTransport speaks cleartext HTTP/2 with prior knowledge only: a client's requests share one
// connection (while it has room for more streams).
func h2cTransport() *http.Transport {
	transport := &http.Transport{Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true)
	return transport
}

// grpcCall makes one gRPC call to gefyra.test.Echo (see serveGRPC) and prints every answer, one per
// line, then "grpc-status N"; it fails for any status but 0.
func grpcCall(args []string) error {
	given, timeout, hs := clientFlags("grpc", args, 3, 10*time.Second)
	method := map[string]string{"unary": "Unary", "stream": "Stream"}[given[1]]
	if method == "" {
		usage()
	}
	req, err := request("POST", strings.TrimSuffix(given[0], "/")+"/gefyra.test.Echo/"+method,
		strings.NewReader(string(grpcFrame(given[2]))), hs)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	client := http.Client{Timeout: timeout, Transport: h2cTransport()}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	for {
		message, err := readGRPCMessage(resp.Body)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		fmt.Println(message)
	}
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	fmt.Println("grpc-status", code)
	if code != "0" {
		return fmt.Errorf("grpc-status %s: %s", code, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	return nil
}

func serveTCP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close()
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				fmt.Fprintf(conn, "%s echo: %s\n", identity(), sc.Text())
			}
		}()
	}
}

func serveUDP(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply := fmt.Sprintf("%s echo: %s", identity(), buf[:n])
		_, _ = pc.WriteTo([]byte(reply), from)
	}
}

// headers is a repeatable -H 'NAME: VALUE' flag.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// request is a GET (or the given method and body) with the headers, each 'NAME: VALUE' ("" adds none).
func request(method, url string, body io.Reader, hs []string) (*http.Request, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if name, value, ok := strings.Cut(h, ":"); ok {
			req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	return req, nil
}

func get(args []string) error {
	given, timeout, hs := clientFlags("get", args, 1, 5*time.Second)
	url := given[0]
	client := httpClient(timeout)
	req, err := request("GET", url, nil, hs)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func send(network string, args []string) error {
	if len(args) != 2 {
		usage()
	}
	conn, err := net.DialTimeout(network, args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := args[1]
	if network == "tcp" {
		msg += "\n"
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	fmt.Println(strings.TrimRight(string(buf[:n]), "\n"))
	return nil
}

// hold keeps one TCP connection to the line echo at ADDR open: a line at once and one after
// SECONDS of silence, each answer printed (a connection that idles through a tunnel must survive).
func hold(args []string) error {
	if len(args) != 2 {
		usage()
	}
	seconds, err := strconv.Atoi(args[1])
	if err != nil || seconds < 0 {
		return fmt.Errorf("SECONDS must be a number")
	}
	conn, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	for i, line := range []string{"before", "after"} {
		if i > 0 {
			time.Sleep(time.Duration(seconds) * time.Second)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintln(conn, line); err != nil {
			return fmt.Errorf("sending %q: %w", line, err)
		}
		if !lines.Scan() {
			return fmt.Errorf("no answer to %q: %v", line, lines.Err())
		}
		fmt.Println(lines.Text())
	}
	return nil
}

func latency(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	var hs headers
	fs.Var(&hs, "H", "header 'NAME: VALUE' (repeatable)")
	if len(args) < 2 {
		usage()
	}
	count, err := strconv.Atoi(args[1])
	if err != nil || count < 1 {
		return fmt.Errorf("COUNT must be a positive number")
	}
	_ = fs.Parse(args[2:])
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	samples := make([]float64, 0, count)
	for i := 0; i < count; i++ {
		req, err := request("GET", args[0], nil, hs)
		if err != nil {
			return err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		samples = append(samples, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(samples)
	pick := func(q float64) float64 { return samples[int(q*float64(len(samples)-1))] }
	fmt.Printf("p50=%.3f p99=%.3f\n", pick(0.5), pick(0.99))
	return nil
}

// tally sends COUNT GET requests (at --rate per second, or back to back), variant i%len in turn,
// and prints one JSON object: per variant, how many answers came from which server (NAME of the
// body "hello from NAME path=..."), the failures, and the latency.
func tally(args []string) error {
	fs := flag.NewFlagSet("tally", flag.ExitOnError)
	rate := fs.Float64("rate", 0, "requests per second (0: back to back)")
	keepalive := fs.Bool("keepalive", false, "one connection for all requests (else a new one each)")
	h2c := fs.Bool("h2c", false, "cleartext HTTP/2: all requests as streams of one connection")
	parallel := fs.Int("parallel", 1, "requests in flight at once (with --h2c: interleaved streams)")
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	var variants headers
	fs.Var(&variants, "variant", "header 'NAME: VALUE' of every n-th request ('' for none; repeatable)")
	if len(args) < 2 {
		usage()
	}
	url := args[0]
	count, err := strconv.Atoi(args[1])
	if err != nil || count < 1 {
		return fmt.Errorf("COUNT must be a positive number")
	}
	_ = fs.Parse(args[2:])
	if len(variants) == 0 {
		variants = headers{""}
	}
	transport := &http.Transport{DisableKeepAlives: !*keepalive, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	if *h2c {
		transport = h2cTransport()
	}
	client := http.Client{Timeout: *timeout, Transport: transport}
	answers := map[string]map[string]int{}
	protocols := map[string]int{}
	var failures []string
	var failedAt []float64 // seconds since the start, of each failure
	var samples []float64
	conns := map[string]bool{}
	var mu sync.Mutex
	slots := make(chan struct{}, max(*parallel, 1))
	var wg sync.WaitGroup
	start := time.Now()
	one := func(req *http.Request, variant string) {
		defer func() { <-slots; wg.Done() }()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			conns[info.Conn.LocalAddr().String()] = true
			mu.Unlock()
		}}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		began := time.Now()
		resp, err := client.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, err.Error())
			failedAt = append(failedAt, began.Sub(start).Seconds())
			return
		}
		samples = append(samples, float64(time.Since(began).Microseconds())/1000)
		who, ok := strings.CutPrefix(string(body), "hello from ")
		if resp.StatusCode >= 400 || !ok {
			failures = append(failures, fmt.Sprintf("HTTP %d: %.80s", resp.StatusCode, body))
			failedAt = append(failedAt, began.Sub(start).Seconds())
			return
		}
		who, _, _ = strings.Cut(who, " path=")
		if answers[variant] == nil {
			answers[variant] = map[string]int{}
		}
		answers[variant][who]++
		protocols[resp.Proto]++
	}
	for i := 0; i < count; i++ {
		if *rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		variant := variants[i%len(variants)]
		req, err := request("GET", url, nil, []string{variant})
		if err != nil {
			return err
		}
		slots <- struct{}{}
		wg.Add(1)
		go one(req, variant)
	}
	wg.Wait()
	sort.Float64s(samples)
	pick := func(q float64) float64 {
		if len(samples) == 0 {
			return 0
		}
		return samples[int(q*float64(len(samples)-1))]
	}
	shown := failures
	if len(shown) > 5 {
		shown = shown[:5]
	}
	out, _ := json.Marshal(map[string]any{
		"answers": answers, "failed": len(failures), "failures": shown, "connections": len(conns), "protocols": protocols,
		"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1), "seconds": time.Since(start).Seconds(),
		"failed_at": failedAt,
	})
	fmt.Println(string(out))
	return nil
}

// upload POSTs BYTES bytes to URL in a chunked body and prints the answer.
func upload(args []string) error {
	fs := flag.NewFlagSet("upload", flag.ExitOnError)
	var hs headers
	fs.Var(&hs, "H", "header 'NAME: VALUE' (repeatable)")
	if len(args) < 2 {
		usage()
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("BYTES must be a number")
	}
	_ = fs.Parse(args[2:])
	reader, writer := io.Pipe()
	sent := sha256.New()
	go func() { writer.CloseWithError(writePattern(io.MultiWriter(writer, sent), size)) }()
	req, err := request("POST", args[0], reader, hs)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err = io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	fmt.Printf("sent_sha256=%x\n", sent.Sum(nil))
	return nil
}

func download(args []string) error {
	if len(args) != 1 {
		usage()
	}
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: HTTP %d", args[0], resp.StatusCode)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	if err != nil {
		return err
	}
	fmt.Printf("received=%d sha256=%x\n", n, sum.Sum(nil))
	return nil
}

// writePattern writes size bytes that differ from one 64 KiB block to the next (a counter in
// every 8 bytes), so that a lost, repeated or reordered block changes the checksum; cheap enough
// not to limit a throughput measurement.
func writePattern(w io.Writer, size int64) error {
	block := make([]byte, 64<<10)
	for count := uint64(0); size > 0; count++ {
		for i := 0; i < len(block); i += 8 {
			binary.LittleEndian.PutUint64(block[i:], count*uint64(len(block))+uint64(i))
		}
		part := block
		if size < int64(len(part)) {
			part = part[:size]
		}
		if _, err := w.Write(part); err != nil {
			return err
		}
		size -= int64(len(part))
	}
	return nil
}

// serveUpgrade switches the connection to a line echo after "101 Switching Protocols", as a
// WebSocket server does after its handshake (the framing does not matter to proxies).
func serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Connection"), "upgrade") || r.Header.Get("Upgrade") == "" {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
	_ = buf.Flush()
	for {
		line, err := buf.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(buf, "%s echo: %s", identity(), line)
		_ = buf.Flush()
	}
}

// upgrade asks URL to upgrade the connection, then sends a line over it and prints the echo.
func upgrade(args []string) error {
	fs := flag.NewFlagSet("upgrade", flag.ExitOnError)
	var hs headers
	fs.Var(&hs, "H", "header 'NAME: VALUE' (repeatable)")
	if len(args) < 1 {
		usage()
	}
	_ = fs.Parse(args[1:])
	req, err := request("GET", args[0], nil, hs)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", req.URL.Host+map[bool]string{true: "", false: ":80"}[strings.Contains(req.URL.Host, ":")], 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	if err := req.Write(conn); err != nil {
		return err
	}
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("no upgrade: HTTP %d", resp.StatusCode)
	}
	if _, err := fmt.Fprintln(conn, "ping"); err != nil {
		return err
	}
	line, err := reader.ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print("upgraded: " + line)
	return nil
}
