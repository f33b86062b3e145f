package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

const (
	// maxStreams bounds the streams open at once (each costs a goroutine and a read buffer).
	maxStreams = 256
	// streamQueueLen is how many datagrams from streams may wait for wireguard-go.
	streamQueueLen = 1024
	// streamWriteTimeout closes a stream that takes no data for this long.
	streamWriteTimeout = 10 * time.Second
	// smallDatagram is the size of the pooled buffers that hold most datagrams (an MTU's worth).
	smallDatagram = 2048
)

var smallDatagrams = sync.Pool{New: func() any { return new([smallDatagram]byte) }}

// streamBind is a conn.Bind for WireGuard's datagrams over UDP and over TCP streams (which the
// Kubernetes API's port-forward can carry): each stream carries datagrams both ways, each
// prefixed with its length (2 bytes, big-endian). UDP stays wireguard-go's own StdNetBind.
// Datagrams from a stream have the stream as their endpoint, so wireguard-go's roaming sends a
// peer's replies back the way its last datagram came: on that stream, or by UDP.
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
	in       chan datagram
	done     chan struct{}
	mu       sync.Mutex
	streams  map[*streamEndpoint]struct{}
}

// datagram is one framed datagram read from a stream.
type datagram struct {
	small *[smallDatagram]byte // the buffer, if pooled
	data  []byte
	from  *streamEndpoint
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
	s := &streamSession{in: make(chan datagram, streamQueueLen), done: make(chan struct{}),
		streams: make(map[*streamEndpoint]struct{})}
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
	return append(fns, s.receive), actual, nil
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
	case <-s.done:
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
	b.log.Info("stream opened", "remote", ep.dst)
	go func() {
		err := s.read(ep)
		s.mu.Lock()
		delete(s.streams, ep)
		s.mu.Unlock()
		ep.close()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = nil
		}
		b.log.Info("stream closed", "remote", ep.dst, "err", err)
	}()
	return ep
}

// read passes ep's datagrams on to receive until the stream or the session ends.
func (s *streamSession) read(ep *streamEndpoint) error {
	r := bufio.NewReaderSize(ep.c, 64<<10)
	var length [2]byte
	for {
		if _, err := io.ReadFull(r, length[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(length[:]))
		d := datagram{from: ep}
		if n <= smallDatagram {
			d.small = smallDatagrams.Get().(*[smallDatagram]byte)
			d.data = d.small[:n]
		} else {
			d.data = make([]byte, n)
		}
		if _, err := io.ReadFull(r, d.data); err != nil {
			return err
		}
		select {
		case s.in <- d:
		case <-s.done:
			return net.ErrClosed
		}
	}
}

// receive is the ReceiveFunc for all streams: it waits for one datagram, then takes whatever
// else is queued.
func (s *streamSession) receive(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var d datagram
	select {
	case d = <-s.in:
	case <-s.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(packets[n], d.data)
		eps[n] = d.from
		if d.small != nil {
			smallDatagrams.Put(d.small)
		}
		n++
		if n == len(packets) {
			return n, nil
		}
		select {
		case d = <-s.in:
		default:
			return n, nil
		}
	}
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
	close(s.done)
	for ep := range s.streams {
		ep.close()
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
		return s.send(bufs)
	}
	return b.udp.Send(bufs, ep)
}

func (b *streamBind) SetMark(mark uint32) error                     { return b.udp.SetMark(mark) }
func (b *streamBind) ParseEndpoint(s string) (conn.Endpoint, error) { return b.udp.ParseEndpoint(s) }
func (b *streamBind) BatchSize() int                                { return b.udp.BatchSize() }

// streamEndpoint is a stream as wireguard-go's endpoint of a peer. Its address is the stream's
// remote address, which `wg show` shows as the peer's endpoint.
type streamEndpoint struct {
	c      net.Conn
	dst    netip.AddrPort
	closed atomic.Bool
	mu     sync.Mutex // one writer at a time: frames must not interleave
	hdr    [2 * conn.IdealBatchSize]byte
	vec    net.Buffers
}

func newStreamEndpoint(c net.Conn) *streamEndpoint {
	ep := &streamEndpoint{c: c, vec: make(net.Buffers, 0, 2*conn.IdealBatchSize)}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ep.dst = netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port())
	}
	return ep
}

// send writes bufs as frames in one system call. Once the stream has ended, what is sent to it
// is lost without an error, as by UDP to a vanished client, until the peer's next datagram
// comes another way.
func (ep *streamEndpoint) send(bufs [][]byte) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed.Load() {
		return nil
	}
	vec := ep.vec[:0]
	for i, b := range bufs {
		if len(b) > 0xffff || i >= conn.IdealBatchSize {
			return errors.New("datagram too large for a stream, or too many")
		}
		h := ep.hdr[2*i : 2*i+2]
		binary.BigEndian.PutUint16(h, uint16(len(b)))
		vec = append(vec, h, b)
	}
	_ = ep.c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := vec.WriteTo(ep.c); err != nil {
		ep.close() // its reader ends and forgets it
		return err
	}
	return nil
}

func (ep *streamEndpoint) close() {
	ep.closed.Store(true)
	ep.c.Close()
}

func (ep *streamEndpoint) ClearSrc()           {}
func (ep *streamEndpoint) SrcToString() string { return "" }
func (ep *streamEndpoint) DstToString() string { return ep.dst.String() }
func (ep *streamEndpoint) DstToBytes() []byte  { b, _ := ep.dst.MarshalBinary(); return b }
func (ep *streamEndpoint) DstIP() netip.Addr   { return ep.dst.Addr() }
func (ep *streamEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }
