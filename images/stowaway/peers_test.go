package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPeerChangesLeaveOtherPeersAlone(t *testing.T) {
	s := startServer(t)
	a := startClient(t, s, "198.18.0.2")
	conn := a.mustDial(t, tcpEcho(t))
	roundTrip(t, conn, "before")

	// Another client comes, carries traffic, and goes; a third peer is added and removed without
	// ever connecting.
	b := startClient(t, s, "198.18.0.3")
	roundTrip(t, b.mustDial(t, tcpEcho(t)), "b's own")
	roundTrip(t, conn, "while b is there")
	other := newKeyPair(t)
	s.addPeer(t, other.public, netip.MustParseAddr("198.18.0.4"))
	roundTrip(t, conn, "after a third peer came")
	s.removePeer(t, b.key.public)
	s.removePeer(t, other.public)
	roundTrip(t, conn, "after both went")

	// `wg show wg0 allowed-ips` reads this: only a is left.
	got := s.uapi(t, "get=1\n")
	if !strings.Contains(got, fmt.Sprintf("public_key=%x", a.key.public)) || strings.Contains(got, fmt.Sprintf("%x", b.key.public)) ||
		!strings.Contains(got, "allowed_ip=198.18.0.2/32") || strings.Count(got, "public_key=") != 1 {
		t.Fatalf("peers after the changes:\n%s", got)
	}
	for _, field := range []string{"rx_bytes=", "tx_bytes=", "last_handshake_time_sec="} {
		if !strings.Contains(got, field) {
			t.Errorf("no %s for `wg show transfer/latest-handshakes`", field)
		}
	}
	// b's stack no longer gets through.
	if err := b.ping(serverPrefix.Addr(), 500*time.Millisecond); err == nil {
		t.Error("a removed peer's ping was answered")
	}
	logs := s.log.String()
	if strings.Count(logs, "peer added") != 3 || strings.Count(logs, "peer removed") != 2 {
		t.Errorf("log lines for peers:\n%s", logs)
	}
}
