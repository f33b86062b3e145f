// Package wgstream carries WireGuard's datagrams on byte streams (TCP, and what the Kubernetes
// API's port-forward carries): each datagram is prefixed with its length (2 bytes, big-endian),
// so that datagram boundaries survive. Both ends of gefyra's tunnel use it: stowaway accepts
// streams, cargo dials one to its relay through the Kubernetes API.
package wgstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

const (
	// writeTimeout closes a stream that takes no data for this long.
	writeTimeout = 10 * time.Second
	// smallDatagram and largeDatagram are the sizes of the pooled buffers that hold datagrams:
	// one of UDP's MTU, and one of a stream's (up to 9000, gefyra's largest MTU, with
	// WireGuard's header); larger ones are allocated.
	smallDatagram = 2048
	largeDatagram = 9216
	// readBuffer is what a stream's reader reads at once: a burst of datagrams in one system call.
	readBuffer = 64 << 10
)

var (
	smallDatagrams = sync.Pool{New: func() any { return new([smallDatagram]byte) }}
	largeDatagrams = sync.Pool{New: func() any { return new([largeDatagram]byte) }}
)

// Addr is a stream's remote address as wireguard-go's endpoint: what `wg show` shows as the
// peer's endpoint. Streams have no source address to stick to.
type Addr netip.AddrPort

func (a Addr) ClearSrc()           {}
func (a Addr) SrcToString() string { return "" }
func (a Addr) DstToString() string { return netip.AddrPort(a).String() }
func (a Addr) DstToBytes() []byte  { b, _ := netip.AddrPort(a).MarshalBinary(); return b }
func (a Addr) DstIP() netip.Addr   { return netip.AddrPort(a).Addr() }
func (a Addr) SrcIP() netip.Addr   { return netip.Addr{} }

// AddrOf is c's remote address (the zero Addr if it has no TCP address).
func AddrOf(c net.Conn) Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return Addr(netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port()))
	}
	return Addr{}
}

// Stream writes frames to one connection.
type Stream struct {
	c      net.Conn
	closed atomic.Bool
	mu     sync.Mutex // one writer at a time: frames must not interleave
	hdr    [2 * conn.IdealBatchSize]byte
	vec    net.Buffers
}

func NewStream(c net.Conn) *Stream {
	return &Stream{c: c, vec: make(net.Buffers, 0, 2*conn.IdealBatchSize)}
}

// Conn is the stream's connection, to read from.
func (s *Stream) Conn() net.Conn { return s.c }

// Send writes bufs as frames in one system call. Once the stream has ended, what is sent to it
// is lost without an error, as by UDP to a vanished peer, until the peer's next datagram comes
// another way.
func (s *Stream) Send(bufs [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	vec := s.vec[:0]
	for i, b := range bufs {
		if len(b) > 0xffff || i >= conn.IdealBatchSize {
			return errors.New("datagram too large for a stream, or too many")
		}
		h := s.hdr[2*i : 2*i+2]
		binary.BigEndian.PutUint16(h, uint16(len(b)))
		vec = append(vec, h, b)
	}
	_ = s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := vec.WriteTo(s.c); err != nil {
		s.Close() // its reader ends too
		return err
	}
	return nil
}

func (s *Stream) Close() {
	s.closed.Store(true)
	s.c.Close()
}

func (s *Stream) Closed() bool { return s.closed.Load() }

// Queue holds the datagrams read from streams until wireguard-go takes them (Receive).
type Queue struct {
	in   chan datagram
	done chan struct{}
	once sync.Once
}

// datagram is one framed datagram read from a stream.
type datagram struct {
	small *[smallDatagram]byte // the buffer, if pooled
	large *[largeDatagram]byte
	data  []byte
	from  conn.Endpoint
}

// NewQueue holds up to size datagrams.
func NewQueue(size int) *Queue {
	return &Queue{in: make(chan datagram, size), done: make(chan struct{})}
}

// Done is closed once the queue is.
func (q *Queue) Done() <-chan struct{} { return q.done }

// Close ends Receive and every Read.
func (q *Queue) Close() { q.once.Do(func() { close(q.done) }) }

// Read queues the datagrams of r, each as coming from `from`, until r or the queue ends; a
// stream that ended cleanly returns nil.
func (q *Queue) Read(r io.Reader, from conn.Endpoint) error {
	err := q.read(bufio.NewReaderSize(r, readBuffer), from)
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (q *Queue) read(r *bufio.Reader, from conn.Endpoint) error {
	var length [2]byte
	for {
		if _, err := io.ReadFull(r, length[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(length[:]))
		d := datagram{from: from}
		switch {
		case n <= smallDatagram:
			d.small = smallDatagrams.Get().(*[smallDatagram]byte)
			d.data = d.small[:n]
		case n <= largeDatagram:
			d.large = largeDatagrams.Get().(*[largeDatagram]byte)
			d.data = d.large[:n]
		default:
			d.data = make([]byte, n)
		}
		if _, err := io.ReadFull(r, d.data); err != nil {
			return err
		}
		select {
		case q.in <- d:
		case <-q.done:
			return net.ErrClosed
		}
	}
}

// release returns d's buffer to its pool.
func (d datagram) release() {
	if d.small != nil {
		smallDatagrams.Put(d.small)
	} else if d.large != nil {
		largeDatagrams.Put(d.large)
	}
}

// Receive is a conn.ReceiveFunc for all streams of the queue: it waits for one datagram, then
// takes whatever else is queued.
func (q *Queue) Receive(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var d datagram
	select {
	case d = <-q.in:
	case <-q.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(packets[n], d.data)
		eps[n] = d.from
		d.release()
		n++
		if n == len(packets) {
			return n, nil
		}
		select {
		case d = <-q.in:
		default:
			return n, nil
		}
	}
}
