// Command stowaway is the cluster end of gefyra's WireGuard tunnel without privilege:
// WireGuard and a TCP/IP stack in user space, in one process. Clients' flows end in the stack and
// leave the pod as its own connections; bridges' ports are ordinary listening sockets. The
// operator manages peers over wireguard-go's UAPI socket (`wg set`) and bridges over a control
// socket beside it.
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	// `stowaway ready`: the readiness probe (the image has no shell and no test(1)).
	if len(os.Args) == 2 && os.Args[1] == "ready" {
		if _, err := os.Stat(filepath.Join(runDir(os.Getenv), "ready")); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "stowaway")
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	os.Exit(run(cfg, log))
}

// run serves until SIGTERM or SIGINT and returns the exit status.
func run(cfg Config, log *slog.Logger) int {
	s, err := Start(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("stopping")
		return 0
	case <-s.Done():
		log.Error("WireGuard device stopped")
		return 1
	}
}

// runDir is where the sockets and the ready file are (WG_RUN_DIR).
func runDir(getenv func(string) string) string {
	if dir := getenv("WG_RUN_DIR"); dir != "" {
		return dir
	}
	return "/var/run/wireguard"
}

// configFromEnv reads the configuration as the old stowaway's entrypoint did.
func configFromEnv(getenv func(string) string) (Config, error) {
	env := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	cfg := Config{RunDir: runDir(getenv)}
	var err error
	if cfg.ListenPort, err = strconv.Atoi(env("WG_LISTEN_PORT", "51820")); err != nil || cfg.ListenPort < 1 || cfg.ListenPort > 65535 {
		return cfg, fmt.Errorf("WG_LISTEN_PORT %q is not a port", getenv("WG_LISTEN_PORT"))
	}
	if cfg.StreamPort, err = strconv.Atoi(env("WG_STREAM_PORT", "51821")); err != nil || cfg.StreamPort < 0 || cfg.StreamPort > 65535 {
		return cfg, fmt.Errorf("WG_STREAM_PORT %q is not a port (0: none)", getenv("WG_STREAM_PORT"))
	}
	if cfg.Address, err = netip.ParsePrefix(env("WG_ADDRESS", "198.18.0.1/16")); err != nil || !cfg.Address.Addr().Is4() {
		return cfg, fmt.Errorf("WG_ADDRESS %q is not an IPv4 address with prefix", getenv("WG_ADDRESS"))
	}
	if cfg.MTU, err = strconv.Atoi(env("WG_MTU", "1340")); err != nil || cfg.MTU < 576 || cfg.MTU > 9000 {
		return cfg, fmt.Errorf("WG_MTU %q is not an MTU (576-9000)", getenv("WG_MTU"))
	}
	keyFile := env("WG_PRIVATE_KEY_FILE", "/etc/gefyra/server/private-key")
	text, err := os.ReadFile(keyFile)
	if err != nil {
		return cfg, fmt.Errorf("reading the private key: %v", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(key) != len(cfg.PrivateKey) {
		return cfg, fmt.Errorf("%s does not hold a WireGuard key (base64, 32 bytes)", keyFile)
	}
	copy(cfg.PrivateKey[:], key)
	return cfg, nil
}
