package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// freeForwardPort finds a port in the bridges' range that nothing on this machine listens on.
func freeForwardPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := minForwardPort + rand.IntN(maxForwardPort-minForwardPort+1)
		if ln, err := net.Listen("tcp", ":"+strconv.Itoa(port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in the bridges' range")
	return 0
}

// clientListener accepts connections in c's stack on port and reports each on the channel.
func clientListener(t testing.TB, c *testClient, port int) (*gonet.TCPListener, <-chan net.Conn) {
	t.Helper()
	ln, err := gonet.ListenTCP(c.tun.stack, fullAddr(netip.AddrPortFrom(c.addr, uint16(port))), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	return ln, accepted
}

func TestForwardReachesTheClientFromListedSourcesOnly(t *testing.T) {
	s := startServer(t)
	c := startClient(t, s, "198.18.0.2")
	port := freeForwardPort(t)
	_, accepted := clientListener(t, c, port)
	target := "127.0.0.1:" + strconv.Itoa(port)

	set := func(sources ...string) {
		t.Helper()
		if err := s.forwards.set([]Forward{{Port: port, Address: "198.18.0.2", Sources: sources}}); err != nil {
			t.Fatal(err)
		}
	}
	set("10.244.0.7", "127.0.0.1")
	conn, err := net.Dial("tcp4", target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var inner net.Conn
	select {
	case inner = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the client accepted nothing")
	}
	defer inner.Close()
	if got := inner.RemoteAddr().(*net.TCPAddr).IP.String(); got != serverPrefix.Addr().String() {
		t.Errorf("the bridged connection comes from %s, not the server's tunnel address", got)
	}
	go func() { _, _ = io.Copy(inner, inner) }()
	roundTrip(t, conn, "through the bridge")

	// Sources change: loopback is no longer listed, its next connection is closed at once.
	set("10.244.0.7")
	refused, err := net.Dial("tcp4", target)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	_ = refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := refused.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection from an unlisted source stayed open: %d, %v", n, err)
	}
	select {
	case <-accepted:
		t.Fatal("the client saw a connection from an unlisted source")
	case <-time.After(200 * time.Millisecond):
	}
	roundTrip(t, conn, "the established connection goes on")

	// Removed: the port no longer listens.
	if err := s.forwards.set(nil); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp4", target); err == nil {
		c.Close()
		t.Fatal("the port still listens after its forward was removed")
	}
}

func TestForwardToAnAbsentClientResets(t *testing.T) {
	s := startServer(t)
	s.forwards.timeout = time.Second
	port := freeForwardPort(t)
	if err := s.forwards.set([]Forward{{Port: port, Address: "198.18.0.9", Sources: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a bridge whose client is absent")
	}
}

func TestForwardsAreValidated(t *testing.T) {
	s := startServer(t)
	port := freeForwardPort(t)
	good := Forward{Port: port, Address: "198.18.0.2", Sources: []string{"10.244.0.7"}}
	if err := s.forwards.set([]Forward{good}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]Forward{
		{{Port: 80, Address: "198.18.0.2"}},
		{{Port: 70000, Address: "198.18.0.2"}},
		{{Port: port, Address: "10.0.0.1"}},
		{{Port: port, Address: "198.18.0.1"}},
		{{Port: port, Address: "::1"}},
		{{Port: port, Address: "198.18.0.2", Sources: []string{"fd00::1"}}},
		{{Port: port, Address: "198.18.0.2", Sources: []string{"10.244.0.300"}}},
		{good, good},
	} {
		if err := s.forwards.set(bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
	if got := s.forwards.get(); len(got) != 1 || !equalForward(got[0], good) {
		t.Fatalf("a bad request changed the forwards: %+v", got)
	}
}
