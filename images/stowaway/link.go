package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the stack's interface into the tunnel, of the server end's MTU (UDP's). largeNICID
// is a second one into the same tunnel, of largeMTU, for the connections whose SYN offers larger
// segments than nicID's MTU takes: only a client that sends on a stream alone does (cargo clamps
// every client's TCP to its own MTU), and a connection's segment size follows the interface its
// SYN came in on. Everything else comes in on nicID, and the stack's own connections and replies
// leave by it: its route is the first.
const (
	nicID      tcpip.NICID = 1
	largeNICID tcpip.NICID = 2
	// largeMTU is the largest MTU a client's end may have (gefyra's Settings.stream_mtu).
	largeMTU = 9000
)

// groBucketSize is how many packets each of gro.GRO's buckets holds.
const groBucketSize = 8

// linkQueueLen is how many packets the stack may queue for wireguard-go before it drops (as a
// kernel interface's txqueuelen).
const linkQueueLen = 1024

// netTUN is the tunnel's inner side as wireguard-go sees it, a tun.Device: decrypted packets go
// into a gVisor stack in this process, and what the stack sends comes out of a channel link
// endpoint. Unlike wireguard-go's tun/netstack it reads and writes in batches, without a
// goroutine hop or an allocation per packet, and it gives access to the stack itself.
type netTUN struct {
	ep     *linkEndpoint
	large  *largeEndpoint
	stack  *stack.Stack
	gro    sync.Pool // of *gro.GRO: one per concurrent Write (wireguard-go writes per peer)
	mtu    int
	events chan tun.Event
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	// packets counts packets either way (for trimWhenIdle).
	packets atomic.Uint64
	// intercept, when set, sees each packet from the tunnel before the stack and returns true
	// for those it has dealt with (dropped, or handled outside the stack).
	intercept func(packet []byte) bool
}

// stackOptions tune the stack for a tunnel that carries bulk transfers and small requests alike.
type stackOptions struct {
	// allowLoopback admits 127.0.0.0/8 destinations from the tunnel (tests only: in a pod they
	// would reach the pod's own loopback services).
	allowLoopback bool
}

// newNetTUN makes a stack with the single IPv4 address addr (its prefix is the tunnel's network)
// and a default route into the tunnel.
func newNetTUN(addr netip.Prefix, mtu int, opts stackOptions) (*netTUN, error) {
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("tunnel address %s is not IPv4", addr)
	}
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: opts.allowLoopback}),
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := tuneTCP(s); err != nil {
		s.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &netTUN{
		ep:     &linkEndpoint{Endpoint: channel.New(linkQueueLen, uint32(mtu), "")},
		stack:  s,
		mtu:    mtu,
		events: make(chan tun.Event, 1),
		ctx:    ctx,
		cancel: cancel,
	}
	// The stack's TCP hands the link up to 32 KiB at once and splits it itself (cheaper than
	// segment by segment). Received checksums are not verified: see Write.
	t.ep.SupportedGSOKind = stack.GVisorGSOSupported
	t.ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	t.large = &largeEndpoint{linkEndpoint: linkEndpoint{Endpoint: channel.New(1, largeMTU, "")}, out: t.ep.Endpoint}
	t.large.SupportedGSOKind = stack.GVisorGSOSupported
	t.large.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	t.gro.New = func() any {
		g := new(gro.GRO)
		g.Init(true)
		return g
	}
	for _, nic := range []struct {
		id tcpip.NICID
		ep stack.LinkEndpoint
	}{{nicID, t.ep}, {largeNICID, t.large}} {
		if err := s.CreateNIC(nic.id, nic.ep); err != nil {
			t.Close()
			return nil, fmt.Errorf("creating the stack's interface %d: %v", nic.id, err)
		}
	}
	protoAddr := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFrom4(addr.Addr().As4()),
			PrefixLen: addr.Bits(),
		},
	}
	for _, id := range []tcpip.NICID{nicID, largeNICID} {
		if err := s.AddProtocolAddress(id, protoAddr, stack.AddressProperties{}); err != nil {
			t.Close()
			return nil, fmt.Errorf("adding %s to the stack: %v", addr, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv4EmptySubnet, NIC: largeNICID}})
	t.events <- tun.EventUp
	return t, nil
}

// timeWait is how long a connection that this end closed first stays in TIME-WAIT. gVisor's
// default is 60 s, and it hands a new SYN for the same addresses and ports only to a listening
// endpoint, which the forwarder of clients' flows is not: a client that opens many short
// connections (its ports wrap around after some thousands, NAT keeps them) had a new connection's
// SYNs swallowed by the old one's TIME-WAIT for up to a minute. Linux accepts such a SYN at once
// (RFC 6191). TIME-WAIT guards against old duplicates of the connection's segments, which the
// tunnel's one path does not keep for seconds.
const timeWait = time.Second

// tuneTCP sets the stack's TCP options: SACK (off by gVisor's default), CUBIC, buffers that
// start at 1 MiB and grow with the measured bandwidth-delay product up to 4 MiB (Linux's
// tcp_moderate_rcvbuf; a connection holds that memory only while data waits in it), and a short
// TIME-WAIT (timeWait).
func tuneTCP(s *stack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	cc := tcpip.CongestionControlOption("cubic")
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: 1 << 20, Max: 4 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: 1 << 20, Max: 4 << 20}
	tw := tcpip.TCPTimeWaitTimeoutOption(timeWait)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &cc, &rcv, &snd, &tw} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("setting TCP option %T: %v", opt, err)
		}
	}
	return nil
}

// Read hands wireguard-go what the stack sends: it waits for one packet, then takes whatever
// else is queued, up to len(bufs).
func (t *netTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	pkt := t.ep.ReadContext(t.ctx)
	if pkt == nil {
		return 0, os.ErrClosed
	}
	n := 0
	for pkt != nil {
		sizes[n] = copyPacket(bufs[n][offset:], pkt)
		pkt.DecRef()
		n++
		if n == len(bufs) {
			break
		}
		pkt = t.ep.Read()
	}
	t.packets.Add(uint64(n))
	return n, nil
}

// copyPacket copies the whole packet (headers and payload) into dst without allocating.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	views, skip := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		n += copy(dst[n:], s[skip:])
		skip = 0
	}
	return n
}

// Write delivers a batch of decrypted packets to the stack, in the caller's goroutine (gVisor
// queues TCP segments to its own workers). Consecutive segments of a TCP connection are
// coalesced first (GRO), so the stack handles a batch's worth of them as one. Their checksums
// are not verified again: WireGuard's authentication has already proven every packet intact
// (Linux's WireGuard marks them CHECKSUM_UNNECESSARY for the same reason).
func (t *netTUN) Write(bufs [][]byte, offset int) (int, error) {
	d := t.ep.dispatcher()
	if d == nil {
		return 0, os.ErrClosed
	}
	g := t.gro.Get().(*gro.GRO)
	g.Dispatcher = d
	for _, b := range bufs {
		packet := b[offset:]
		if len(packet) < header.IPv4MinimumSize || packet[0]>>4 != 4 {
			continue // the tunnel carries IPv4 only
		}
		if t.intercept != nil && t.intercept(packet) {
			continue
		}
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(packet)})
		pkb.NetworkProtocolNumber = ipv4.ProtocolNumber
		pkb.RXChecksumValidated = true // else GRO verifies them
		if large := t.large.dispatcher(); large != nil && offersLargerSegments(packet, t.mtu) {
			large.DeliverNetworkPacket(ipv4.ProtocolNumber, pkb)
		} else {
			g.Enqueue(pkb)
		}
		pkb.DecRef()
	}
	// gro.GRO.Flush delivers only the first packet of each of its buckets (its loop follows a
	// list link that removing the packet has just cleared): flushing once per place in a bucket
	// empties it.
	for range groBucketSize {
		g.Flush()
	}
	g.Dispatcher = nil
	t.gro.Put(g)
	t.packets.Add(uint64(len(bufs)))
	return len(bufs), nil
}

// offersLargerSegments tells a TCP SYN (not a SYN-ACK) whose MSS option is larger than an
// interface of mtu takes.
func offersLargerSegments(packet []byte, mtu int) bool {
	ip := header.IPv4(packet)
	if !ip.IsValid(len(packet)) || ip.TransportProtocol() != header.TCPProtocolNumber || ip.More() || ip.FragmentOffset() != 0 {
		return false
	}
	tcpHdr := header.TCP(ip.Payload())
	if len(tcpHdr) < header.TCPMinimumSize || int(tcpHdr.DataOffset()) < header.TCPMinimumSize ||
		int(tcpHdr.DataOffset()) > len(tcpHdr) || tcpHdr.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) != header.TCPFlagSyn {
		return false
	}
	return int(header.ParseSynOptions(tcpHdr.Options(), false).MSS) > mtu-header.IPv4MinimumSize-header.TCPMinimumSize
}

// inject sends a complete IPv4 packet made outside the stack into the tunnel (ICMP replies).
func (t *netTUN) inject(packet []byte) error {
	pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(packet)})
	defer pkb.DecRef()
	var list stack.PacketBufferList
	list.PushBack(pkb)
	if n, err := t.ep.WritePackets(list); err != nil || n == 0 {
		return errors.New("tunnel queue full")
	}
	return nil
}

// linkEndpoint is a channel endpoint that also tells which dispatcher (the stack's interface)
// it delivers to, so that Write can hand packets to it through GRO.
type linkEndpoint struct {
	*channel.Endpoint
	mu sync.RWMutex
	d  stack.NetworkDispatcher
}

func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.Endpoint.Attach(d)
	e.mu.Lock()
	e.d = d
	e.mu.Unlock()
}

// largeEndpoint is largeNICID's link: its own MTU, and what the stack sends by it joins nicID's
// queue, which Read takes from.
type largeEndpoint struct {
	linkEndpoint
	out *channel.Endpoint
}

func (e *largeEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	return e.out.WritePackets(pkts)
}

func (e *linkEndpoint) dispatcher() stack.NetworkDispatcher {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.d
}

// BatchSize is wireguard-go's ideal batch: the device reads and writes this many at once.
func (t *netTUN) BatchSize() int { return conn.IdealBatchSize }

func (t *netTUN) File() *os.File           { return nil }
func (t *netTUN) Events() <-chan tun.Event { return t.events }
func (t *netTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *netTUN) Name() (string, error)    { return "wg0", nil }

// Close stops the stack; it is safe to call more than once.
func (t *netTUN) Close() error {
	t.once.Do(func() {
		t.cancel()
		t.stack.Close()
		t.ep.Close()
		t.large.Close()
		close(t.events)
	})
	return nil
}
