package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/device"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// Config is the server's configuration (main reads it from the environment).
type Config struct {
	ListenPort int          // UDP port for WireGuard (0: any, for tests)
	StreamPort int          // TCP port for WireGuard over streams (0: none)
	Address    netip.Prefix // the server's tunnel address; its prefix is the tunnel's network
	MTU        int
	PrivateKey [32]byte
	RunDir     string // holds wg0.sock, control and ready
	// AllowLoopback lets clients reach 127.0.0.0/8 (tests only).
	AllowLoopback bool
	// listenICMP, if set, replaces unprivileged ICMP sockets (tests only).
	listenICMP func() (net.PacketConn, error)
}

// Server is the tunnel's cluster end: WireGuard over a user-space stack, with its two sockets.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tun       *netTUN
	dev       *device.Device
	outbound  *outbound
	pinger    *pinger
	forwards  *forwards
	listeners []net.Listener
	stop      context.CancelFunc // ends the server's own goroutines
}

// Start brings the tunnel up, serves wg0.sock and control, and then creates the file ready.
func Start(cfg Config, log *slog.Logger) (s *Server, err error) {
	// A restarted container finds the emptyDir as its predecessor left it.
	if err := os.Remove(filepath.Join(cfg.RunDir, "ready")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	t, err := newNetTUN(cfg.Address, cfg.MTU, stackOptions{allowLoopback: cfg.AllowLoopback})
	if err != nil {
		return nil, err
	}
	s = &Server{cfg: cfg, log: log, tun: t}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	pol := policy{server: cfg.Address.Addr(), network: cfg.Address.Masked(), allowLoopback: cfg.AllowLoopback}
	// Accept packets to any address and answer from it: the stack ends every client's flow.
	for _, id := range []tcpip.NICID{nicID, largeNICID} {
		if err := t.stack.SetPromiscuousMode(id, true); err != nil {
			return nil, fmt.Errorf("promiscuous mode: %v", err)
		}
		if err := t.stack.SetSpoofing(id, true); err != nil {
			return nil, fmt.Errorf("spoofing: %v", err)
		}
	}
	s.outbound = &outbound{stack: t.stack, policy: pol, log: log, udpIdle: udpIdleTimeout}
	s.outbound.install()
	s.pinger = newPinger(t, cfg.listenICMP, log)
	t.intercept = (&interceptor{policy: pol, pinger: s.pinger}).intercept
	s.forwards = newForwards(t.stack, pol.network, pol.server, log)

	s.dev = device.NewDevice(t, newStreamBind(cfg.StreamPort, log), wireguardLogger(log))
	if err := s.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(cfg.PrivateKey[:]), cfg.ListenPort)); err != nil {
		return nil, fmt.Errorf("configuring WireGuard: %v", redactErr(err))
	}
	if err := s.dev.Up(); err != nil {
		return nil, fmt.Errorf("starting WireGuard: %v", err)
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, err
	}
	uapi, err := s.listen("wg0.sock")
	if err != nil {
		return nil, err
	}
	go serveUAPI(uapi, s.dev)
	control, err := s.listen("control")
	if err != nil {
		return nil, err
	}
	go serveControl(control, s.forwards)
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go trimWhenIdle(ctx, t)
	if err := os.WriteFile(filepath.Join(cfg.RunDir, "ready"), nil, 0o644); err != nil {
		return nil, err
	}
	log.Info("stowaway up", "udp", s.Port(), "tcp", cfg.StreamPort, "address", cfg.Address, "mtu", cfg.MTU)
	return s, nil
}

func (s *Server) listen(name string) (net.Listener, error) {
	ln, err := listenUnix(filepath.Join(s.cfg.RunDir, name))
	if err != nil {
		return nil, err
	}
	s.listeners = append(s.listeners, ln)
	return ln, nil
}

// Port is the UDP port WireGuard listens on.
func (s *Server) Port() int {
	text, err := s.dev.IpcGet()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			port, _ := strconv.Atoi(v)
			return port
		}
	}
	return 0
}

// Done is closed when the device has stopped.
func (s *Server) Done() <-chan struct{} { return s.dev.Wait() }

// Close takes the server down: not ready first, then the sockets, the bridges and the tunnel.
func (s *Server) Close() {
	_ = os.Remove(filepath.Join(s.cfg.RunDir, "ready"))
	if s.stop != nil {
		s.stop()
	}
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.forwards != nil {
		s.forwards.closeAll()
	}
	if s.pinger != nil {
		s.pinger.close()
	}
	if s.dev != nil {
		s.dev.Close() // closes the tun too
	} else {
		s.tun.Close()
	}
}

// redactErr keeps a key that an error quotes out of the log.
func redactErr(err error) error {
	return errors.New(redact(err.Error()))
}
