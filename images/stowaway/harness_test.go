package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The harness runs the server and its clients in the test's process: each client is a
// wireguard-go device over its own user-space stack, with the server as its peer on loopback.

var serverPrefix = netip.MustParsePrefix("198.18.0.1/16")

type keyPair struct{ private, public [32]byte }

func newKeyPair(t testing.TB) keyPair {
	var k keyPair
	if _, err := rand.Read(k.private[:]); err != nil {
		t.Fatal(err)
	}
	k.private[0] &= 248
	k.private[31] = (k.private[31] & 127) | 64
	pub, err := curve25519.X25519(k.private[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(k.public[:], pub)
	return k
}

// logBuffer collects a server's log for the test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a server in this process, or (Server nil) in a process of its own.
type testServer struct {
	*Server
	dir  string // its WG_RUN_DIR
	port int    // its UDP port
	key  keyPair
	log  *logBuffer
}

// startServer starts a server in this process; options change its configuration first.
func startServer(t testing.TB, options ...func(*Config)) *testServer {
	t.Helper()
	key := newKeyPair(t)
	logs := &logBuffer{}
	cfg := Config{Address: serverPrefix, MTU: 1340, PrivateKey: key.private, RunDir: t.TempDir(), AllowLoopback: true}
	for _, option := range options {
		option(&cfg)
	}
	s, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if text := logs.String(); strings.Contains(text, hex.EncodeToString(key.private[:])) {
			t.Errorf("the log shows the private key:\n%s", text)
		}
	})
	return &testServer{Server: s, dir: cfg.RunDir, port: s.Port(), key: key, log: logs}
}

// uapi sends one UAPI request to the server's wg0.sock, as `wg` does, and fails the test unless
// it succeeds; it returns the response's lines.
func (s *testServer) uapi(t testing.TB, request string) string {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(s.dir, "wg0.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request+"\n"); err != nil {
		t.Fatal(err)
	}
	var lines []string
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("UAPI %q: %v", request, err)
		}
		if line == "\n" {
			break
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	if last := lines[len(lines)-1]; last != "errno=0" {
		t.Fatalf("UAPI %q: %s", request, last)
	}
	return strings.Join(lines, "\n")
}

// addPeer is `wg set wg0 peer KEY allowed-ips A/32 persistent-keepalive 5`.
func (s *testServer) addPeer(t testing.TB, key [32]byte, addr netip.Addr) {
	s.uapi(t, fmt.Sprintf("set=1\npublic_key=%x\npersistent_keepalive_interval=5\nreplace_allowed_ips=true\nallowed_ip=%s/32\n", key, addr))
}

// removePeer is `wg set wg0 peer KEY remove`.
func (s *testServer) removePeer(t testing.TB, key [32]byte) {
	s.uapi(t, fmt.Sprintf("set=1\npublic_key=%x\nremove=true\n", key))
}

type testClient struct {
	addr netip.Addr
	key  keyPair
	tun  *netTUN
	dev  *device.Device
}

// startClient makes a client at addr, a peer of s, that reaches s by UDP.
func startClient(t testing.TB, s *testServer, addr string) *testClient {
	t.Helper()
	return startClientWith(t, s, addr, conn.NewStdNetBind(), 1340)
}

// startClientWith makes a client at addr, a peer of s, with bind and its tunnel's MTU.
func startClientWith(t testing.TB, s *testServer, addr string, bind conn.Bind, mtu int) *testClient {
	t.Helper()
	c := &testClient{addr: netip.MustParseAddr(addr), key: newKeyPair(t)}
	var err error
	c.tun, err = newNetTUN(netip.PrefixFrom(c.addr, 32), mtu, stackOptions{allowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	c.dev = device.NewDevice(c.tun, bind, device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(c.dev.Close)
	s.addPeer(t, c.key.public, c.addr)
	// As cargo: keepalives, so that the client handshakes at once and the server learns its
	// endpoint (the server cannot reach a client before that).
	err = c.dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=0\npublic_key=%x\nendpoint=127.0.0.1:%d\nallowed_ip=0.0.0.0/0\npersistent_keepalive_interval=5\n",
		c.key.private, s.key.public, s.port))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.dev.Up(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if text, _ := c.dev.IpcGet(); !strings.Contains(text, "last_handshake_time_sec=0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no handshake")
		}
	}
	return c
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// dial opens a TCP connection from the client's stack through the tunnel.
func (c *testClient) dial(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, c.tun.stack, fullAddr(dst), ipv4.ProtocolNumber)
}

func (c *testClient) mustDial(t testing.TB, dst netip.AddrPort) *gonet.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tc, err := c.dial(ctx, dst)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", dst, c.addr, err)
	}
	t.Cleanup(func() { tc.Close() })
	return tc
}

// ping sends one ICMP echo request from the client's stack to dst and waits for the reply.
func (c *testClient) ping(dst netip.Addr, timeout time.Duration) error {
	var wq waiter.Queue
	ep, err := c.tun.stack.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if err != nil {
		return fmt.Errorf("ICMP endpoint: %v", err)
	}
	defer ep.Close()
	if err := ep.Connect(fullAddr(netip.AddrPortFrom(dst, 0))); err != nil {
		return fmt.Errorf("ICMP connect: %v", err)
	}
	entry, readable := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	req := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+16))
	req.SetType(header.ICMPv4Echo)
	req.SetSequence(7)
	copy(req.Payload(), "gefyra-ping-test")
	if _, err := ep.Write(bytes.NewReader(req), tcpip.WriteOptions{}); err != nil {
		return fmt.Errorf("ICMP write: %v", err)
	}
	deadline := time.After(timeout)
	for {
		var reply bytes.Buffer
		_, err := ep.Read(&reply, tcpip.ReadOptions{})
		if _, wait := err.(*tcpip.ErrWouldBlock); wait {
			select {
			case <-readable:
				continue
			case <-deadline:
				return errors.New("no echo reply")
			}
		}
		if err != nil {
			return fmt.Errorf("ICMP read: %v", err)
		}
		msg := header.ICMPv4(reply.Bytes())
		if msg.Type() == header.ICMPv4EchoReply && msg.Sequence() == 7 && bytes.Equal(msg.Payload(), req.Payload()) {
			return nil
		}
	}
}

// tcpEcho serves TCP on loopback: each connection gets back what it sends, then a half-close.
func tcpEcho(t testing.TB) netip.AddrPort {
	return tcpServer(t, func(c *net.TCPConn) {
		_, _ = io.Copy(c, c)
		_ = c.CloseWrite()
	})
}

// tcpServer serves TCP on loopback with handle.
func tcpServer(t testing.TB, handle func(*net.TCPConn)) netip.AddrPort {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// udpEcho serves UDP on loopback: every datagram goes back to its sender.
func udpEcho(t testing.TB) netip.AddrPort {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// roundTrip writes msg on c and expects it back.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("got %q, want %q", got, msg)
	}
}
