package main

import (
	"errors"
	"io/fs"
	"net"
	"os"

	"golang.zx2c4.com/wireguard/device"
)

// socketMode lets the operator's container use the sockets if it runs as the same user or in
// the same group (the pod's runAsGroup or fsGroup), and nobody else.
const socketMode = 0o660

// listenUnix listens on a unix socket at path, replacing a stale one.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, socketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveUAPI answers wireguard-go's configuration protocol, what `wg` speaks, on ln until ln is
// closed: device.IpcHandle is what wireguard-go's own main serves on ipc.UAPIListen. The
// listener is this process's own rather than ipc.UAPIOpen's, because ipc fixes the directory
// (/var/run/wireguard, changeable only by a linker flag) and the socket's mode (0700 under
// umask 077), which would shut out an operator container of another user.
func serveUAPI(ln net.Listener, dev *device.Device) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go dev.IpcHandle(c)
	}
}
