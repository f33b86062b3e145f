package main

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"gefyra.dev/images/wgstream"
	"golang.zx2c4.com/wireguard/conn"
)

const (
	// maxStreams bounds the streams open at once (each costs a goroutine and a read buffer).
	maxStreams = 256
	// streamQueueLen is how many datagrams from streams may wait for wireguard-go.
	streamQueueLen = 1024
)

// streamBind is a conn.Bind for WireGuard's datagrams over UDP and over TCP streams (which the
// Kubernetes API's port-forward carries; framed by wgstream). UDP stays wireguard-go's own
// StdNetBind. Datagrams from a stream have the stream as their endpoint, so wireguard-go's
// roaming sends a peer's replies back the way its last datagram came: on that stream, or by UDP.
type streamBind struct {
	udp  conn.Bind
	port int // TCP port for streams; 0: none
	log  *slog.Logger

	mu   sync.Mutex
	open *streamSession // nil while closed
}

// streamSession is the state of one Open until its Close.
type streamSession struct {
	listener net.Listener // nil without a port
	queue    *wgstream.Queue
	mu       sync.Mutex
	streams  map[*streamEndpoint]struct{}
}

func newStreamBind(port int, log *slog.Logger) *streamBind {
	return &streamBind{udp: conn.NewStdNetBind(), port: port, log: log}
}

// Open opens the UDP sockets and the stream listener, and adds a receive function for all
// streams to UDP's.
func (b *streamBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := b.udp.Open(port)
	if err != nil {
		return nil, 0, err
	}
	s := &streamSession{queue: wgstream.NewQueue(streamQueueLen), streams: make(map[*streamEndpoint]struct{})}
	if b.port != 0 {
		if s.listener, err = net.Listen("tcp", ":"+strconv.Itoa(b.port)); err != nil {
			_ = b.udp.Close()
			return nil, 0, err
		}
		go b.accept(s)
	}
	b.open = s
	if b.port == 0 {
		return fns, actual, nil // no streams: no goroutine holding a batch of buffers for them
	}
	return append(fns, s.queue.Receive), actual, nil
}

func (b *streamBind) accept(s *streamSession) {
	for {
		c, err := s.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.log.Error("accepting a stream failed", "err", err)
			}
			return
		}
		b.add(s, c)
	}
}

// addStream makes c a stream of the open session (the accept loop's, and a client's in tests);
// it returns nil if the bind is closed or full.
func (b *streamBind) addStream(c net.Conn) *streamEndpoint {
	b.mu.Lock()
	s := b.open
	b.mu.Unlock()
	if s == nil {
		c.Close()
		return nil
	}
	return b.add(s, c)
}

func (b *streamBind) add(s *streamSession, c net.Conn) *streamEndpoint {
	ep := newStreamEndpoint(c)
	s.mu.Lock()
	full := len(s.streams) >= maxStreams
	select {
	case <-s.queue.Done():
		full = true
	default:
	}
	if !full {
		s.streams[ep] = struct{}{}
	}
	s.mu.Unlock()
	if full {
		c.Close()
		return nil
	}
	b.log.Info("stream opened", "remote", ep.DstToString())
	go func() {
		err := s.queue.Read(c, ep)
		s.mu.Lock()
		delete(s.streams, ep)
		s.mu.Unlock()
		ep.Close()
		b.log.Info("stream closed", "remote", ep.DstToString(), "err", err)
	}()
	return ep
}

// Close closes UDP, the listener and every stream.
func (b *streamBind) Close() error {
	b.mu.Lock()
	s := b.open
	b.open = nil
	b.mu.Unlock()
	err := b.udp.Close()
	if s == nil {
		return err
	}
	s.mu.Lock()
	s.queue.Close()
	for ep := range s.streams {
		ep.Close()
	}
	s.mu.Unlock()
	if s.listener != nil {
		s.listener.Close()
	}
	return err
}

// Send writes bufs to a stream if ep is one, else by UDP.
func (b *streamBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if s, ok := ep.(*streamEndpoint); ok {
		return s.Send(bufs)
	}
	return b.udp.Send(bufs, ep)
}

func (b *streamBind) SetMark(mark uint32) error                     { return b.udp.SetMark(mark) }
func (b *streamBind) ParseEndpoint(s string) (conn.Endpoint, error) { return b.udp.ParseEndpoint(s) }
func (b *streamBind) BatchSize() int                                { return b.udp.BatchSize() }

// streamEndpoint is an accepted stream as wireguard-go's endpoint of a peer.
type streamEndpoint struct {
	*wgstream.Stream
	wgstream.Addr
}

func newStreamEndpoint(c net.Conn) *streamEndpoint {
	return &streamEndpoint{Stream: wgstream.NewStream(c), Addr: wgstream.AddrOf(c)}
}
