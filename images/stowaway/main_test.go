package main

import (
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigFromEnvironment(t *testing.T) {
	key := newKeyPair(t)
	keyFile := filepath.Join(t.TempDir(), "private-key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key.private[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(vars map[string]string) func(string) string {
		return func(name string) string { return vars[name] }
	}
	cfg, err := configFromEnv(env(map[string]string{"WG_PRIVATE_KEY_FILE": keyFile}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{ListenPort: 51820, StreamPort: 51821, Address: netip.MustParsePrefix("198.18.0.1/16"), MTU: 1340,
		PrivateKey: key.private, RunDir: "/var/run/wireguard"}
	if cfg.ListenPort != want.ListenPort || cfg.StreamPort != want.StreamPort || cfg.Address != want.Address ||
		cfg.MTU != want.MTU || cfg.PrivateKey != want.PrivateKey || cfg.RunDir != want.RunDir {
		t.Fatalf("defaults: %+v", cfg)
	}
	for name, value := range map[string]string{
		"WG_LISTEN_PORT": "0", "WG_STREAM_PORT": "70000", "WG_ADDRESS": "198.18.0.1", "WG_MTU": "100",
		"WG_PRIVATE_KEY_FILE": filepath.Join(t.TempDir(), "absent"),
	} {
		vars := map[string]string{"WG_PRIVATE_KEY_FILE": keyFile, name: value}
		if _, err := configFromEnv(env(vars)); err == nil {
			t.Errorf("%s=%s was accepted", name, value)
		} else if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(key.private[:])) {
			t.Errorf("the error shows the key: %v", err)
		}
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := configFromEnv(env(map[string]string{"WG_PRIVATE_KEY_FILE": keyFile})); err == nil {
		t.Error("a file without a key was accepted")
	}
}
