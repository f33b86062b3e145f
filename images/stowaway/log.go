package main

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"golang.zx2c4.com/wireguard/device"
)

// keyLike matches what could be a key in hex (UAPI) or base64 (wg) form.
var keyLike = regexp.MustCompile(`[0-9a-fA-F]{64}|[A-Za-z0-9+/]{42,43}=`)

// redact hides anything key-like in a message that quotes its input.
func redact(msg string) string {
	return keyLike.ReplaceAllString(msg, "[redacted]")
}

// wireguardLogger passes on wireguard-go's errors, and of its chatter only peers' creation and
// removal over UAPI (its handshake and keepalive lines would be several a minute per peer).
// Peers are named as wireguard-go names them, by a public key's first and last four characters.
// Sending to a peer without an endpoint is no error here: the server learns a client's endpoint
// from the client's first handshake, and until then its keepalives have nowhere to go.
func wireguardLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			var event string
			switch {
			case strings.HasSuffix(format, "UAPI: Created"):
				event = "peer added"
			case strings.HasSuffix(format, "UAPI: Removing"):
				event = "peer removed"
			default:
				return
			}
			if len(args) == 1 {
				log.Info(event, "peer", fmt.Sprint(args[0]))
			}
		},
		Errorf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if !strings.HasSuffix(msg, "no known endpoint for peer") {
				log.Error(redact(msg))
			}
		},
	}
}
