package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// dialTimeout bounds opening a connection for a client (its SYN waits meanwhile).
	dialTimeout = 10 * time.Second
	// maxPendingDials is how many clients' connections may wait for their dial at once; SYNs
	// beyond it are dropped (the client sends them again).
	maxPendingDials = 512
	// keepaliveIdle and keepaliveInterval detect a vanished client on an idle connection
	// (after two minutes), so that its pod-side connection does not stay open forever.
	keepaliveIdle     = 60 * time.Second
	keepaliveInterval = 15 * time.Second
	keepaliveCount    = 4
)

// policy says which destinations a client may reach through the tunnel: everything the pod may
// reach, but nothing in the tunnel's network (other clients, as the old stowaway's FORWARD DROP
// rule) and nothing on the pod's loopback (the kernel drops such "martian" packets too).
type policy struct {
	server        netip.Addr   // the server's own tunnel address
	network       netip.Prefix // the tunnel's network
	allowLoopback bool         // tests only
}

func (p policy) allowed(dst netip.Addr) bool {
	switch {
	case !dst.Is4(), p.network.Contains(dst), dst.IsUnspecified(), dst.IsMulticast():
		return false
	case dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	case dst.IsLoopback():
		return p.allowLoopback
	}
	return true
}

// outbound terminates the clients' TCP and UDP flows in the stack (which accepts packets to any
// destination: promiscuous mode, and spoofing for the replies) and opens each again from the
// pod, so that it reaches the cluster with the pod's address, as NAT did.
type outbound struct {
	stack    *stack.Stack
	policy   policy
	log      *slog.Logger
	dialer   net.Dialer
	udpIdle  time.Duration // udpIdleTimeout but in tests
	udpFlows atomic.Int64  // open now
}

// install makes the stack hand every new flow to o.
func (o *outbound) install() {
	tcpFwd := tcp.NewForwarder(o.stack, 0, maxPendingDials, o.handleTCP)
	o.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(o.stack, o.handleUDP)
	o.stack.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)
}

// handleTCP runs in its own goroutine for each client's SYN. The handshake with the client
// completes only once the pod-side connection is up, so that a refused or unreachable
// destination looks the same to the client as without the tunnel: a reset.
func (o *outbound) handleTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort)
	if !o.policy.allowed(dst.Addr()) {
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	real, err := o.dialer.DialContext(ctx, "tcp4", dst.String())
	cancel()
	if err != nil {
		r.Complete(true)
		o.log.Info("outbound connection failed", "src", addrOf(id.RemoteAddress), "dst", dst, "err", err)
		return
	}
	var wq waiter.Queue
	ep, tcpErr := r.CreateEndpoint(&wq)
	r.Complete(tcpErr != nil)
	if tcpErr != nil {
		real.Close()
		return
	}
	setKeepalive(ep)
	splice(gonet.NewTCPConn(&wq, ep), real.(*net.TCPConn))
}

// setKeepalive makes a stack connection probe its idle peer.
func setKeepalive(ep tcpip.Endpoint) {
	idle, interval := tcpip.KeepaliveIdleOption(keepaliveIdle), tcpip.KeepaliveIntervalOption(keepaliveInterval)
	_ = ep.SetSockOpt(&idle)
	_ = ep.SetSockOpt(&interval)
	_ = ep.SetSockOptInt(tcpip.KeepaliveCountOption, keepaliveCount)
	ep.SocketOptions().SetKeepAlive(true)
}

func addrOf(a tcpip.Address) netip.Addr {
	return netip.AddrFrom4(a.As4())
}
