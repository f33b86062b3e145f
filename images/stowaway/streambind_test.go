package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// switchingBind is a client's bind that sends to the server by UDP or, once told, on a stream.
// (The client's wireguard-go roams as the server's does: once the server's replies come on the
// stream, it would send everything there.)
type switchingBind struct {
	*streamBind
	udpServer  conn.Endpoint
	streamPort int                            // the server's
	via        atomic.Pointer[streamEndpoint] // nil: UDP
	streamOnly bool                           // open a stream at the first send
}

func newSwitchingBind(t testing.TB, s *testServer, streamPort int) *switchingBind {
	// The client listens too (its bind receives from streams only with a port), but nothing
	// connects there: its stream is the one it opens.
	b := &switchingBind{streamBind: newStreamBind(freeTCPPort(t), slog.New(slog.DiscardHandler)), streamPort: streamPort}
	var err error
	if b.udpServer, err = b.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", s.port)); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *switchingBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	s := b.via.Load()
	if s == nil && b.streamOnly {
		var err error
		if s, err = b.dialStream(); err != nil {
			return err
		}
	}
	if s != nil {
		return b.streamBind.Send(bufs, s)
	}
	return b.streamBind.Send(bufs, b.udpServer)
}

// dialStream opens a stream to the server; the client sends on it from now on.
func (b *switchingBind) dialStream() (*streamEndpoint, error) {
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", b.streamPort))
	if err != nil {
		return nil, err
	}
	ep := b.addStream(c)
	if ep == nil {
		return nil, errors.New("the client's bind is closed")
	}
	b.via.Store(ep)
	return ep, nil
}

func (b *switchingBind) mustDialStream(t testing.TB) *streamEndpoint {
	t.Helper()
	ep, err := b.dialStream()
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func freeTCPPort(t testing.TB) int {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serverEndpoint is the endpoint the server has for its only peer (`wg show wg0 endpoints`).
func serverEndpoint(t testing.TB, s *testServer) string {
	for _, line := range strings.Split(s.uapi(t, "get=1\n"), "\n") {
		if v, ok := strings.CutPrefix(line, "endpoint="); ok {
			return v
		}
	}
	return ""
}

// waitEndpoint fails unless the server's endpoint for its peer becomes want soon (a datagram
// sent the old way just before a switch may still arrive after one sent the new way).
func waitEndpoint(t testing.TB, s *testServer, want string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = serverEndpoint(t, s); got == want {
			return
		}
	}
	t.Fatalf("the server sends to %s, not %s", got, want)
}

func TestStreamCarriesTheTunnel(t *testing.T) {
	streamPort := freeTCPPort(t)
	s := startServer(t, func(cfg *Config) { cfg.StreamPort = streamPort })
	bind := newSwitchingBind(t, s, streamPort)
	bind.streamOnly = true // never UDP, as through the Kubernetes API's port-forward
	c := startClientWith(t, s, "198.18.0.2", bind, 1340)
	stream := bind.via.Load()

	conn := c.mustDial(t, tcpEcho(t))
	roundTrip(t, conn, strings.Repeat("through a stream ", 10000))
	waitEndpoint(t, s, stream.Conn().LocalAddr().String())
	if !strings.Contains(s.log.String(), "stream opened") {
		t.Errorf("no log line for the stream:\n%s", s.log)
	}
}

func TestSwitchingBetweenUDPAndAStreamKeepsConnections(t *testing.T) {
	streamPort := freeTCPPort(t)
	s := startServer(t, func(cfg *Config) { cfg.StreamPort = streamPort })
	bind := newSwitchingBind(t, s, streamPort)
	c := startClientWith(t, s, "198.18.0.2", bind, 1340)
	conn := c.mustDial(t, tcpEcho(t))
	roundTrip(t, conn, "by UDP")
	udpEndpoint := serverEndpoint(t, s)

	stream := bind.mustDialStream(t)
	roundTrip(t, conn, "by the stream")
	waitEndpoint(t, s, stream.Conn().LocalAddr().String())

	bind.via.Store(nil)
	roundTrip(t, conn, "by UDP again")
	waitEndpoint(t, s, udpEndpoint)

	// The stream ends: UDP goes on; a new stream takes over.
	stream.Close()
	roundTrip(t, conn, "after the stream ended")
	bind.mustDialStream(t)
	roundTrip(t, conn, strings.Repeat("by a new stream ", 5000))
	_ = conn.CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(conn); err != nil || len(rest) != 0 {
		t.Fatalf("the connection's end: %q, %v", rest, err)
	}
}

// TestSegmentsFollowTheClientsMTU: a client on a stream alone with MTU 9000 gets segments of that
// size from the server end (its SYN comes in on the large interface); one of UDP's MTU gets none
// larger than its MTU, as before.
func TestSegmentsFollowTheClientsMTU(t *testing.T) {
	for _, mtu := range []int{1340, 9000} {
		t.Run(strconv.Itoa(mtu), func(t *testing.T) {
			streamPort := freeTCPPort(t)
			s := startServer(t, func(cfg *Config) { cfg.StreamPort = streamPort })
			bind := newSwitchingBind(t, s, streamPort)
			bind.streamOnly = true
			c := startClientWith(t, s, "198.18.0.2", bind, mtu)
			var largest atomic.Int64
			c.tun.intercept = func(packet []byte) bool {
				if n := int64(len(packet)); n > largest.Load() {
					largest.Store(n)
				}
				return false
			}
			conn := c.mustDial(t, tcpSource(t))
			const want = 4 << 20
			if err := binary.Write(conn, binary.BigEndian, int64(want)); err != nil {
				t.Fatal(err)
			}
			if got, err := io.Copy(io.Discard, conn); err != nil || got != want {
				t.Fatalf("got %d bytes of %d: %v", got, want, err)
			}
			if got := int(largest.Load()); got > mtu || (mtu > 1340 && got <= 1340) {
				t.Fatalf("largest packet from the server end: %d bytes, the client's MTU %d", got, mtu)
			}
		})
	}
}
