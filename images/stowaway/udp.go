package main

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// udpIdleTimeout ends a UDP flow without datagrams either way (as conntrack's 30 s).
	udpIdleTimeout = 30 * time.Second
	// dnsIdleTimeout ends flows to port 53 sooner: there are many, and a resolver's retry after
	// it simply opens a new flow.
	dnsIdleTimeout = 5 * time.Second
	// maxDatagram is the largest UDP payload.
	maxDatagram = 65535
)

var datagramBuffers = sync.Pool{New: func() any { return new([maxDatagram]byte) }}

// udpFlow relays one client's UDP flow (source and destination address and port) to a
// connected socket in the pod. It holds no buffer while idle: datagrams from the tunnel are
// relayed in the stack's delivery callback, and those from the pod are read only once the
// socket is readable, into a pooled buffer.
type udpFlow struct {
	o     *outbound
	ep    tcpip.Endpoint
	wq    waiter.Queue
	entry waiter.Entry
	inner *gonet.UDPConn // writes into the tunnel
	real  *net.UDPConn
	raw   syscall.RawConn
	idle  time.Duration
	last  atomic.Int64 // unix nanoseconds of the last datagram either way
	once  sync.Once
}

// handleUDP is called in the stack's delivery path for the first datagram of a flow: it must
// not block (a UDP socket's dial does not).
func (o *outbound) handleUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort)
	if !o.policy.allowed(dst.Addr()) {
		return
	}
	real, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		o.log.Info("outbound UDP failed", "src", addrOf(id.RemoteAddress), "dst", dst, "err", err)
		return
	}
	raw, err := real.SyscallConn()
	if err != nil {
		real.Close()
		return
	}
	f := &udpFlow{o: o, real: real, raw: raw, idle: o.udpIdle}
	if dst.Port() == 53 {
		f.idle = min(f.idle, dnsIdleTimeout)
	}
	ep, tcpErr := r.CreateEndpoint(&f.wq) // queues the first datagram
	if tcpErr != nil {
		real.Close()
		return
	}
	f.ep, f.inner = ep, gonet.NewUDPConn(&f.wq, ep)
	o.udpFlows.Add(1)
	f.touch()
	f.entry = waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) { f.fromTunnel() })
	f.wq.EventRegister(&f.entry)
	f.fromTunnel() // what arrived before the callback was registered
	go f.fromPod()
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// fromTunnel sends every datagram queued in the stack endpoint to the pod-side socket.
func (f *udpFlow) fromTunnel() {
	buf := datagramBuffers.Get().(*[maxDatagram]byte)
	defer datagramBuffers.Put(buf)
	for {
		w := tcpip.SliceWriter(buf[:])
		res, err := f.ep.Read(&w, tcpip.ReadOptions{})
		if err != nil {
			return // nothing more queued, or closed
		}
		f.touch()
		_, _ = f.real.Write(buf[:res.Count]) // lost, as UDP may be
	}
}

// fromPod relays the pod-side socket's datagrams into the tunnel until the flow is idle.
func (f *udpFlow) fromPod() {
	defer f.close()
	for {
		_ = f.real.SetReadDeadline(time.Unix(0, f.last.Load()).Add(f.idle))
		var buf *[maxDatagram]byte
		var n int
		var readErr error
		err := f.raw.Read(func(fd uintptr) bool {
			b := datagramBuffers.Get().(*[maxDatagram]byte)
			n, readErr = unix.Read(int(fd), b[:])
			if readErr == unix.EAGAIN {
				datagramBuffers.Put(b)
				return false // wait for the socket without holding a buffer
			}
			buf = b
			return true
		})
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, f.last.Load())) < f.idle {
				continue // a datagram from the tunnel moved the deadline
			}
			return // idle, or closed
		}
		if readErr == nil {
			f.touch()
			_, _ = f.inner.Write(buf[:n])
		} // else an ICMP error for an earlier datagram (ECONNREFUSED): UDP goes on
		datagramBuffers.Put(buf)
	}
}

func (f *udpFlow) close() {
	f.once.Do(func() {
		f.wq.EventUnregister(&f.entry)
		f.ep.Close()
		f.real.Close()
		f.o.udpFlows.Add(-1)
	})
}
