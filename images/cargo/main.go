// Command cargo is the WireGuard of gefyra's local end: wireguard-go's device, configured over
// its UAPI socket (`wg`), with a bind that reaches the server end by UDP or on a stream to the
// relay through the Kubernetes API (see dialBind). It runs in the foreground until SIGTERM or
// SIGINT: `gefyra-wireguard wg0` (the image names the binary so).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// streamsFile lists the endpoints (HOST:PORT, one per line) reached on a stream; cargo's
// gefyra-endpoint writes it.
const streamsFile = "/etc/gefyra/streams"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cargo INTERFACE")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1]))
}

func run(name string) int {
	logger := device.NewLogger(device.LogLevelError, fmt.Sprintf("(%s) ", name))
	t, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		logger.Errorf("creating the tun device: %v", err)
		return 1
	}
	uapiFile, err := ipc.UAPIOpen(name)
	if err != nil {
		t.Close()
		logger.Errorf("opening the UAPI socket: %v", err)
		return 1
	}
	dev := device.NewDevice(t, newDialBind(streamsFile), logger)
	uapi, err := ipc.UAPIListen(name, uapiFile)
	if err != nil {
		dev.Close()
		logger.Errorf("listening on the UAPI socket: %v", err)
		return 1
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	status := 0
	select {
	case <-term:
	case <-dev.Wait():
		status = 1
	}
	uapi.Close()
	dev.Close()
	return status
}
