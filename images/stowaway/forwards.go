package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The ports bridges may use (gefyra.core.model.names.PROXY_PORTS).
const (
	minForwardPort = 20000
	maxForwardPort = 29999
)

// Forward is one bridge, as the operator sends it: TCP connections from one of Sources (the
// bridged pods' IPs) to the pod's Port go into the tunnel, to the same port of Address (the
// bridge's client).
type Forward struct {
	Port    int      `json:"port"`
	Address string   `json:"address"`
	Sources []string `json:"sources"`
}

// forwardRule is a Forward checked and parsed.
type forwardRule struct {
	Forward
	address netip.Addr
	sources []netip.Addr
}

func (r *forwardRule) admits(src netip.Addr) bool {
	return slices.Contains(r.sources, src)
}

// forwardListener is one bridge's listening socket; its rule changes in place.
type forwardListener struct {
	ln   net.Listener
	rule atomic.Pointer[forwardRule]
}

// forwards keeps one listening socket per bridged port, as the operator last set them.
type forwards struct {
	stack   *stack.Stack
	network netip.Prefix // the tunnel's: every bridge's address is in it
	server  netip.Addr   // the server's own address, never a bridge's
	log     *slog.Logger
	timeout time.Duration // for a connection into the tunnel

	mu        sync.Mutex
	listeners map[uint16]*forwardListener
	current   []Forward // as last set, normalised, sorted by port
}

func newForwards(s *stack.Stack, network netip.Prefix, server netip.Addr, log *slog.Logger) *forwards {
	return &forwards{stack: s, network: network, server: server, log: log, timeout: dialTimeout,
		listeners: make(map[uint16]*forwardListener), current: []Forward{}}
}

// check parses and validates every value of list; the first problem is the error.
func (f *forwards) check(list []Forward) ([]*forwardRule, error) {
	rules := make([]*forwardRule, 0, len(list))
	seen := make(map[int]bool)
	for _, fw := range list {
		if fw.Port < minForwardPort || fw.Port > maxForwardPort {
			return nil, fmt.Errorf("port %d is not in the bridges' range %d-%d", fw.Port, minForwardPort, maxForwardPort)
		}
		if seen[fw.Port] {
			return nil, fmt.Errorf("port %d is listed twice", fw.Port)
		}
		seen[fw.Port] = true
		address, err := netip.ParseAddr(fw.Address)
		if err != nil || !address.Is4() || !f.network.Contains(address) || address == f.server {
			return nil, fmt.Errorf("address %q of port %d is not a client's address in %s", fw.Address, fw.Port, f.network)
		}
		rule := &forwardRule{address: address}
		for _, s := range fw.Sources {
			src, err := netip.ParseAddr(s)
			if err != nil || !src.Is4() {
				return nil, fmt.Errorf("source %q of port %d is not an IPv4 address", s, fw.Port)
			}
			if !slices.Contains(rule.sources, src) {
				rule.sources = append(rule.sources, src)
			}
		}
		slices.SortFunc(rule.sources, netip.Addr.Compare)
		rule.Forward = Forward{Port: fw.Port, Address: address.String(), Sources: make([]string, len(rule.sources))}
		for i, src := range rule.sources {
			rule.Sources[i] = src.String()
		}
		rules = append(rules, rule)
	}
	slices.SortFunc(rules, func(a, b *forwardRule) int { return a.Port - b.Port })
	return rules, nil
}

// set replaces the bridges with list: all of it, or (on an error) nothing. Ports no longer
// listed stop listening (their established connections go on, as conntrack kept them); a
// listed port's changed address or sources apply to its next connections.
func (f *forwards) set(list []Forward) error {
	rules, err := f.check(list)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	opened := make(map[uint16]*forwardListener)
	for _, r := range rules {
		port := uint16(r.Port)
		if f.listeners[port] != nil {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(r.Port))
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			return fmt.Errorf("listening on port %d: %v", r.Port, err)
		}
		opened[port] = &forwardListener{ln: ln}
	}
	wanted := make(map[uint16]*forwardRule, len(rules))
	next := make([]Forward, len(rules))
	for i, r := range rules {
		wanted[uint16(r.Port)] = r
		next[i] = r.Forward
	}
	for port, l := range f.listeners {
		if wanted[port] == nil {
			l.ln.Close()
			delete(f.listeners, port)
		}
	}
	for port, r := range wanted {
		if l := opened[port]; l != nil {
			l.rule.Store(r)
			f.listeners[port] = l
			go f.serve(l)
		} else {
			f.listeners[port].rule.Store(r)
		}
	}
	if !slices.EqualFunc(f.current, next, equalForward) {
		f.log.Info("forwards set", "forwards", next)
	}
	f.current = next
	return nil
}

func equalForward(a, b Forward) bool {
	return a.Port == b.Port && a.Address == b.Address && slices.Equal(a.Sources, b.Sources)
}

// get returns the bridges as last set.
func (f *forwards) get() []Forward {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.current)
}

// closeAll stops every listener.
func (f *forwards) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for port, l := range f.listeners {
		l.ln.Close()
		delete(f.listeners, port)
	}
}

// serve accepts l's connections until l is closed. A connection from a source the rule does not
// list is reset at once, as the port without the old DNAT rule would have.
func (f *forwards) serve(l *forwardListener) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.Error("accepting a bridge connection failed", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		tc := c.(*net.TCPConn)
		rule := l.rule.Load()
		if !rule.admits(tc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()) {
			abort(tc)
			continue
		}
		go f.bridge(tc, rule)
	}
}

// bridge opens c's connection into the tunnel (from the server's tunnel address) and relays.
func (f *forwards) bridge(c *net.TCPConn, r *forwardRule) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	dst := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(r.address.As4()), Port: uint16(r.Port)}
	inner, err := gonet.DialContextTCP(ctx, f.stack, dst, ipv4.ProtocolNumber)
	cancel()
	if err != nil {
		abort(c)
		f.log.Info("bridge connection failed", "port", r.Port, "address", r.Address, "err", err)
		return
	}
	splice(c, inner)
}
