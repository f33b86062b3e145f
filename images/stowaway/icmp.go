package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// echoIdleTimeout ends an echo flow (one client's ping of one destination) without requests.
const echoIdleTimeout = 10 * time.Second

// interceptor sees every packet from the tunnel before the stack. In promiscuous mode the stack
// would answer an echo request to any address itself, so ICMP is decided here: echo requests to
// the server's own address go to the stack, those beyond go to the pinger (if the pod may ping),
// and all other ICMP to other addresses is dropped.
type interceptor struct {
	policy policy
	pinger *pinger // nil where the pod may not open ICMP sockets
}

// intercept returns true for packets it has dealt with.
func (i *interceptor) intercept(packet []byte) bool {
	ip := header.IPv4(packet)
	if !ip.IsValid(len(packet)) {
		return true
	}
	if ip.TransportProtocol() != header.ICMPv4ProtocolNumber {
		return false
	}
	dst := addrOf(ip.DestinationAddress())
	if dst == i.policy.server {
		return false
	}
	msg := header.ICMPv4(ip.Payload())
	if i.pinger == nil || ip.More() || ip.FragmentOffset() != 0 || len(msg) < header.ICMPv4MinimumSize ||
		msg.Type() != header.ICMPv4Echo || !i.policy.allowed(dst) {
		return true
	}
	i.pinger.echo(addrOf(ip.SourceAddress()), dst, msg)
	return true
}

// pinger relays echo requests with unprivileged ICMP sockets (Linux's ping sockets, allowed for
// the groups in net.ipv4.ping_group_range), one per flow; the kernel gives each socket its own
// identifier, which pinger swaps back in the replies.
type pinger struct {
	tun    *netTUN
	listen func() (net.PacketConn, error) // opens a flow's ICMP socket
	mu     sync.Mutex
	flows  map[echoKey]*echoFlow
}

type echoKey struct {
	src, dst netip.Addr
	id       uint16
}

type echoFlow struct {
	conn net.PacketConn
	last atomic.Int64 // unix nanoseconds of the last request
}

// newPinger returns nil if the pod may not open ICMP sockets (with listen: listenICMP if nil).
func newPinger(t *netTUN, listen func() (net.PacketConn, error), log *slog.Logger) *pinger {
	if listen == nil {
		listen = listenICMP
	}
	c, err := listen()
	if err != nil {
		log.Info("ping beyond the server's address is off: no ICMP sockets here (net.ipv4.ping_group_range)")
		return nil
	}
	c.Close()
	return &pinger{tun: t, listen: listen, flows: make(map[echoKey]*echoFlow)}
}

// listenICMP opens an unprivileged ICMP socket; its WriteTo takes a *net.UDPAddr.
func listenICMP() (net.PacketConn, error) {
	return icmp.ListenPacket("udp4", "0.0.0.0")
}

// echo sends one request; its flow's goroutine relays the replies.
func (p *pinger) echo(src, dst netip.Addr, msg header.ICMPv4) {
	key := echoKey{src, dst, msg.Ident()}
	p.mu.Lock()
	f := p.flows[key]
	if f == nil {
		c, err := p.listen()
		if err != nil {
			p.mu.Unlock()
			return
		}
		f = &echoFlow{conn: c}
		p.flows[key] = f
		go p.replies(key, f)
	}
	f.last.Store(time.Now().UnixNano())
	p.mu.Unlock()
	_, _ = f.conn.WriteTo(msg, &net.UDPAddr{IP: dst.AsSlice()})
}

// replies relays a flow's echo replies into the tunnel until the flow is idle.
func (p *pinger) replies(key echoKey, f *echoFlow) {
	defer f.conn.Close()
	buf := make([]byte, header.IPv4MinimumSize+p.tun.mtu)
	for {
		_ = f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(echoIdleTimeout))
		n, _, err := f.conn.ReadFrom(buf[header.IPv4MinimumSize:])
		if err != nil {
			p.mu.Lock() // a request meanwhile either moves f.last or finds the flow gone
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < echoIdleTimeout {
				p.mu.Unlock()
				continue
			}
			if p.flows[key] == f {
				delete(p.flows, key)
			}
			p.mu.Unlock()
			return
		}
		msg := header.ICMPv4(buf[header.IPv4MinimumSize : header.IPv4MinimumSize+n])
		if len(msg) < header.ICMPv4MinimumSize || msg.Type() != header.ICMPv4EchoReply {
			continue
		}
		msg.SetIdent(key.id)
		_ = p.tun.inject(echoReply(buf[:header.IPv4MinimumSize+n], key.dst, key.src))
	}
}

// close ends every flow.
func (p *pinger) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flows {
		f.conn.Close()
	}
}

// echoReply completes packet, whose ICMP message follows room for an IPv4 header, as a reply
// from src to dst.
func echoReply(packet []byte, src, dst netip.Addr) []byte {
	ip := header.IPv4(packet)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(packet)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	msg := header.ICMPv4(ip.Payload())
	msg.SetChecksum(0)
	msg.SetChecksum(^checksum.Checksum(msg, 0))
	return packet
}
