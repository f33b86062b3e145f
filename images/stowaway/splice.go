package main

import (
	"io"
	"net"
	"sync"
)

// copyBufferSize is the size of the pooled buffers that carry a TCP connection's data between
// the stack and a pod-side socket: large enough that bulk data costs few system calls.
const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// stream is a TCP connection either in the stack (gonet) or in the pod (net.TCPConn).
type stream interface {
	net.Conn
	CloseWrite() error
}

// splice relays between a and b until both directions have ended (a half-close travels on as a
// half-close), then closes both. An error in either direction aborts both at once.
func splice(a, b stream) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		relay(a, b)
	}()
	relay(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// relay copies src to dst through a pooled buffer. The wrappers hide ReadFrom and WriteTo, which
// would otherwise allocate a buffer of their own for every connection.
func relay(dst, src stream) {
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf[:])
	copyBuffers.Put(buf)
	if err != nil {
		abort(dst)
		abort(src)
		return
	}
	_ = dst.CloseWrite()
}

// abort closes c at once; a pod-side connection is reset (as the peer's reset would have done
// without the tunnel), not closed in order.
func abort(c stream) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
