package main

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"gefyra.dev/images/wgstream"
	"golang.zx2c4.com/wireguard/conn"
)

const (
	// queueLen is how many datagrams from the stream may wait for wireguard-go.
	queueLen = 1024
	// dialTimeout bounds a connection to the relay (on this container's own network).
	dialTimeout = time.Second
	// redialPause is how long after a failed dial datagrams to the stream are dropped (as UDP
	// drops them) before the next try: wireguard-go sends again (handshakes, keepalives).
	redialPause = 200 * time.Millisecond
)

var errRedialLater = errors.New("the stream's relay did not take a connection just now")

// dialBind is cargo's conn.Bind: wireguard-go's own UDP, and a stream (framed by wgstream) to
// each endpoint listed in the streams file, the relay through the Kubernetes API. The relay
// then only copies bytes between that stream and the API's port-forward to the server end,
// whose frames are the same: no work per datagram outside WireGuard's two ends.
//
// A stream is dialed when wireguard-go first sends to its endpoint and again after it ended
// (the relay closes it when its port-forward ends, or when nothing came for a while). The
// endpoint stays the same object, so wireguard-go's roaming keeps sending there.
type dialBind struct {
	udp     conn.Bind
	streams string

	mu      sync.Mutex
	queue   *wgstream.Queue // nil while closed
	dialers map[netip.AddrPort]*dialEndpoint
}

func newDialBind(streams string) *dialBind {
	return &dialBind{udp: conn.NewStdNetBind(), streams: streams, dialers: make(map[netip.AddrPort]*dialEndpoint)}
}

func (b *dialBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queue != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := b.udp.Open(port)
	if err != nil {
		return nil, 0, err
	}
	b.queue = wgstream.NewQueue(queueLen)
	return append(fns, b.queue.Receive), actual, nil
}

// Close closes UDP and the streams (they are dialed again after the next Open).
func (b *dialBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.udp.Close()
	if b.queue != nil {
		b.queue.Close()
		b.queue = nil
	}
	for _, d := range b.dialers {
		d.drop()
	}
	return err
}

// ParseEndpoint makes a listed endpoint a stream's, any other UDP's.
func (b *dialBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && b.listed(ap) {
		b.mu.Lock()
		defer b.mu.Unlock()
		d, ok := b.dialers[ap]
		if !ok {
			d = &dialEndpoint{Addr: wgstream.Addr(ap), bind: b}
			b.dialers[ap] = d
		}
		return d, nil
	}
	return b.udp.ParseEndpoint(s)
}

// listed says whether the streams file names ap (a missing file names none).
func (b *dialBind) listed(ap netip.AddrPort) bool {
	f, err := os.Open(b.streams)
	if err != nil {
		return false
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if found, err := netip.ParseAddrPort(strings.TrimSpace(lines.Text())); err == nil && found == ap {
			return true
		}
	}
	return false
}

func (b *dialBind) openQueue() *wgstream.Queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queue
}

func (b *dialBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if d, ok := ep.(*dialEndpoint); ok {
		return d.send(bufs)
	}
	return b.udp.Send(bufs, ep)
}

func (b *dialBind) SetMark(mark uint32) error { return b.udp.SetMark(mark) }
func (b *dialBind) BatchSize() int            { return b.udp.BatchSize() }

// dialEndpoint is a stream's endpoint: the stream it dialed last.
type dialEndpoint struct {
	wgstream.Addr
	bind *dialBind

	mu     sync.Mutex
	stream *wgstream.Stream // nil or closed: dial at the next send
	failed time.Time        // the last failed dial
}

func (d *dialEndpoint) send(bufs [][]byte) error {
	s, err := d.current()
	if err != nil {
		return err
	}
	return s.Send(bufs)
}

// current is the open stream, dialed now if there is none.
func (d *dialEndpoint) current() (*wgstream.Stream, error) {
	queue := d.bind.openQueue() // before d.mu: Close holds the bind's lock while it drops streams
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stream != nil && !d.stream.Closed() {
		return d.stream, nil
	}
	if queue == nil {
		return nil, net.ErrClosed
	}
	if time.Since(d.failed) < redialPause {
		return nil, errRedialLater
	}
	c, err := net.DialTimeout("tcp", d.DstToString(), dialTimeout)
	if err != nil {
		d.failed = time.Now()
		return nil, err
	}
	s := wgstream.NewStream(c)
	d.stream = s
	go func() {
		_ = queue.Read(c, d)
		s.Close()
	}()
	return s, nil
}

// drop closes the stream, if one is open.
func (d *dialEndpoint) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stream != nil {
		d.stream.Close()
		d.stream = nil
	}
}
