package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// Config is the server's configuration (main reads it from the environment).
type Config struct {
	ListenPort int          // UDP port for WireGuard (0: any, for tests)
	Address    netip.Prefix // the server's tunnel address; its prefix is the tunnel's network
	MTU        int
	PrivateKey [32]byte
	RunDir     string // holds wg0.sock, control.sock and ready
	// AllowLoopback lets clients reach 127.0.0.0/8 (tests only).
	AllowLoopback bool
}

// Server is the tunnel's cluster end: WireGuard over a user-space stack, with its two sockets.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tun       *netTUN
	dev       *device.Device
	pinger    *pinger
	forwards  *forwards
	listeners []net.Listener
}

// Start brings the tunnel up, serves wg0.sock and control.sock, and then creates the file ready.
func Start(cfg Config, log *slog.Logger) (s *Server, err error) {
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
	if err := t.stack.SetPromiscuousMode(nicID, true); err != nil {
		return nil, fmt.Errorf("promiscuous mode: %v", err)
	}
	if err := t.stack.SetSpoofing(nicID, true); err != nil {
		return nil, fmt.Errorf("spoofing: %v", err)
	}
	(&outbound{stack: t.stack, policy: pol, log: log}).install()
	s.pinger = newPinger(t, log)
	t.intercept = (&interceptor{policy: pol, pinger: s.pinger}).intercept
	s.forwards = newForwards(t.stack, pol.network, pol.server, log)

	s.dev = device.NewDevice(t, conn.NewStdNetBind(), wireguardLogger(log))
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
	control, err := s.listen("control.sock")
	if err != nil {
		return nil, err
	}
	go serveControl(control, s.forwards)
	if err := os.WriteFile(filepath.Join(cfg.RunDir, "ready"), nil, 0o644); err != nil {
		return nil, err
	}
	log.Info("stowaway up", "udp", s.Port(), "address", cfg.Address, "mtu", cfg.MTU)
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
