package main

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// relay is a stand-in for the relay through the Kubernetes API: a TCP listener whose accepted
// connections the test reads and writes frames on.
type relay struct {
	ln    net.Listener
	conns chan net.Conn
}

func newRelay(t *testing.T) *relay {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, conns: make(chan net.Conn, 4)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *relay) accepted(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-r.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the bind dialed no stream")
		return nil
	}
}

func openBind(t *testing.T, listed ...string) (*dialBind, []conn.ReceiveFunc) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "streams")
	text := ""
	for _, l := range listed {
		text += l + "\n"
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newDialBind(file)
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, fns
}

func readFrame(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var length [2]byte
	if _, err := io.ReadFull(c, length[:]); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, binary.BigEndian.Uint16(length[:]))
	if _, err := io.ReadFull(c, data); err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFrame(t *testing.T, c net.Conn, data string) {
	t.Helper()
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(data)))
	if _, err := c.Write(append(frame, data...)); err != nil {
		t.Fatal(err)
	}
}

func TestAListedEndpointIsAStreamBothWays(t *testing.T) {
	r := newRelay(t)
	b, fns := openBind(t, "192.0.2.1:9", r.ln.Addr().String())
	ep, err := b.ParseEndpoint(r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if ep.DstToString() != r.ln.Addr().String() {
		t.Errorf("the endpoint shows as %s", ep.DstToString())
	}
	if err := b.Send([][]byte{[]byte("one"), []byte("two")}, ep); err != nil {
		t.Fatal(err)
	}
	c := r.accepted(t)
	for _, want := range []string{"one", "two"} {
		if got := readFrame(t, c); got != want {
			t.Errorf("the relay read %q, not %q", got, want)
		}
	}
	writeFrame(t, c, "back")
	receive := fns[len(fns)-1] // the streams' receive function comes after UDP's
	packets, sizes, eps := [][]byte{make([]byte, 100)}, make([]int, 1), make([]conn.Endpoint, 1)
	n, err := receive(packets, sizes, eps)
	if err != nil || n != 1 || string(packets[0][:sizes[0]]) != "back" {
		t.Fatalf("received %d %q, %v", n, packets[0][:sizes[0]], err)
	}
	if eps[0] != ep {
		t.Error("a datagram from the stream does not come from its endpoint: roaming would leave it")
	}
	again, _ := b.ParseEndpoint(r.ln.Addr().String())
	if again != ep {
		t.Error("parsing the endpoint again makes another stream")
	}
}

func TestAStreamThatEndedIsDialedAgain(t *testing.T) {
	r := newRelay(t)
	b, _ := openBind(t, r.ln.Addr().String())
	ep, _ := b.ParseEndpoint(r.ln.Addr().String())
	if err := b.Send([][]byte{[]byte("first")}, ep); err != nil {
		t.Fatal(err)
	}
	first := r.accepted(t)
	readFrame(t, first)
	first.Close() // the relay's port-forward ended
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = b.Send([][]byte{[]byte("second")}, ep) // lost until the bind sees the end, as by UDP
		select {
		case c := <-r.conns:
			defer c.Close()
			if got := readFrame(t, c); got != "second" {
				t.Errorf("the new stream carried %q first", got)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no new stream after the first ended")
		}
	}
}

func TestARefusedDialWaitsBeforeTheNext(t *testing.T) {
	r := newRelay(t)
	addr := r.ln.Addr().String()
	r.ln.Close()
	b, _ := openBind(t, addr)
	ep, _ := b.ParseEndpoint(addr)
	if err := b.Send([][]byte{[]byte("x")}, ep); err == nil || err == errRedialLater {
		t.Fatalf("a refused dial: %v", err)
	}
	if err := b.Send([][]byte{[]byte("x")}, ep); err != errRedialLater {
		t.Fatalf("a send right after a refused dial: %v", err)
	}
}

func TestAnUnlistedEndpointIsUDP(t *testing.T) {
	b, _ := openBind(t, "192.0.2.1:9")
	ep, err := b.ParseEndpoint("192.0.2.2:9")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ep.(*dialEndpoint); ok {
		t.Error("an endpoint that the file does not list is a stream")
	}
	noFile := newDialBind(filepath.Join(t.TempDir(), "missing"))
	if ep, _ := noFile.ParseEndpoint("192.0.2.1:9"); ep == nil {
		t.Error("no endpoint without a streams file")
	} else if _, ok := ep.(*dialEndpoint); ok {
		t.Error("a stream without a streams file")
	}
}

func TestCloseEndsTheStreamAndItsReceive(t *testing.T) {
	r := newRelay(t)
	b, fns := openBind(t, r.ln.Addr().String())
	ep, _ := b.ParseEndpoint(r.ln.Addr().String())
	_ = b.Send([][]byte{[]byte("x")}, ep)
	c := r.accepted(t)
	readFrame(t, c)
	b.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the stream after Close: %v", err)
	}
	if _, err := fns[len(fns)-1](make([][]byte, 1), make([]int, 1), make([]conn.Endpoint, 1)); err != net.ErrClosed {
		t.Errorf("receive after Close: %v", err)
	}
	if err := b.Send([][]byte{[]byte("x")}, ep); err != net.ErrClosed {
		t.Errorf("send after Close: %v", err)
	}
}
