package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

func TestOutboundTCPCarriesAMegabyteBothWays(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	conn := c.mustDial(t, tcpEcho(t))

	sent := make([]byte, 1<<20)
	_, _ = rand.Read(sent)
	errs := make(chan error, 1)
	go func() {
		_, err := conn.Write(sent)
		if err == nil {
			err = conn.CloseWrite() // the half-close travels to the echo server and back
		}
		errs <- err
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("echo differs: %d bytes back of %d", len(got), len(sent))
	}
}

func TestOutboundTCPToAClosedPortIsReset(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback: nobody listens, the dial is refused, the client sees a reset.
	start := time.Now()
	if _, err := c.dial(ctx, netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Fatal("a connection to a closed port was established")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("refusal took %v: the client should get a reset, not a timeout", time.Since(start))
	}
}

func TestOutboundUDPEchoes(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	dst := fullAddr(udpEcho(t))
	conn, err := gonet.DialUDP(c.tun.stack, nil, &dst, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, msg := range []string{"one", "two", string(bytes.Repeat([]byte("x"), 1200))} {
		roundTrip(t, conn, msg)
	}
}

func TestOutboundUDPFlowsEndWhenIdle(t *testing.T) {
	s := startServer(t)
	s.outbound.udpIdle = 300 * time.Millisecond // before any flow
	c := startClient(t, s, "198.18.0.2")
	dst := fullAddr(udpEcho(t))
	conn, err := gonet.DialUDP(c.tun.stack, nil, &dst, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, "first")
	if n := s.outbound.udpFlows.Load(); n != 1 {
		t.Fatalf("%d flows open, want 1", n)
	}
	for deadline := time.Now().Add(5 * time.Second); s.outbound.udpFlows.Load() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle flow is still open")
		}
	}
	roundTrip(t, conn, "a new flow") // the same client socket: the server opens a new flow
}

func TestPingOfTheServerIsAnswered(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	if err := c.ping(serverPrefix.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPingBeyondTheTunnel(t *testing.T) {
	s := startServer(t)
	if s.pinger == nil {
		t.Skip("this machine gives no ICMP sockets (net.ipv4.ping_group_range): the server skips such pings")
	}
	c := startClient(t, s, "198.18.0.2")
	if err := c.ping(netip.MustParseAddr("127.0.0.1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestOtherClientsAreOutOfReach(t *testing.T) {
	s := startServer(t)
	a := startClient(t, s, "198.18.0.2")
	b := startClient(t, s, "198.18.0.3")
	// b listens, and talks to the server (so that the server knows its endpoint).
	ln, err := gonet.ListenTCP(b.tun.stack, fullAddr(netip.AddrPortFrom(b.addr, 80)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	if err := b.ping(serverPrefix.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(b.addr, 80), netip.AddrPortFrom(serverPrefix.Addr(), 80)} {
		if _, err := a.dial(ctx, dst); err == nil {
			t.Errorf("a reached %s", dst)
		}
	}
	if err := a.ping(b.addr, time.Second); err == nil {
		t.Error("a's ping of b was answered")
	}
	bAddr := fullAddr(netip.AddrPortFrom(b.addr, 53))
	bUDP, err := gonet.DialUDP(b.tun.stack, &bAddr, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer bUDP.Close()
	aUDP, err := gonet.DialUDP(a.tun.stack, nil, &bAddr, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer aUDP.Close()
	if _, err := aUDP.Write([]byte("hello b")); err != nil {
		t.Fatal(err)
	}
	_ = bUDP.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := bUDP.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("b received %d bytes of UDP from a", n)
	}
	select {
	case <-accepted:
		t.Error("b accepted a connection")
	case <-time.After(200 * time.Millisecond):
	}
}

// kernelPing stands in for Linux's ICMP sockets where the test may not open them: each socket
// is a UDP socket on loopback whose requests an echo responder answers as the kernel would,
// with the socket's own identifier.
func kernelPing(t *testing.T) func() (net.PacketConn, error) {
	responder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { responder.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := responder.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			msg := header.ICMPv4(buf[:n])
			msg.SetType(header.ICMPv4EchoReply)
			msg.SetIdent(from.Port())
			_, _ = responder.WriteToUDPAddrPort(msg, from)
		}
	}()
	return func() (net.PacketConn, error) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return redirected{c, responder.LocalAddr()}, err
	}
}

type redirected struct {
	*net.UDPConn
	to net.Addr
}

func (r redirected) WriteTo(b []byte, _ net.Addr) (int, error) { return r.UDPConn.WriteTo(b, r.to) }

func TestPingBeyondTheTunnelSwapsIdentifiers(t *testing.T) {
	listen := kernelPing(t)
	s := startServer(t, func(cfg *Config) { cfg.listenICMP = listen })
	c := startClient(t, s, "198.18.0.2")
	for range 2 {
		if err := c.ping(netip.MustParseAddr("10.96.0.10"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// A client that opens many short connections reuses its ports after some thousands (and NAT
// keeps them): a new connection on the addresses and ports of one that the server end closed
// first, still in the server end's TIME-WAIT, must be taken within seconds, not after a minute.
func TestANewConnectionOnTheAddressesOfOneInTimeWaitIsTaken(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	dst := tcpServer(t, func(conn *net.TCPConn) { _, _ = conn.Write([]byte("bye")) }) // closes first
	local := fullAddr(netip.AddrPortFrom(c.addr, 40000))
	for round := 0; round < 2; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := gonet.DialTCPWithBind(ctx, c.tun.stack, local, fullAddr(dst), ipv4.ProtocolNumber)
		cancel()
		if err != nil {
			t.Fatalf("connection %d from the same port: %v", round+1, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := io.ReadAll(conn); err != nil || string(got) != "bye" {
			t.Fatalf("connection %d read %q, %v", round+1, got, err)
		}
		conn.Close() // after the server end's FIN: it is the one in TIME-WAIT
		time.Sleep(100 * time.Millisecond)
	}
}
