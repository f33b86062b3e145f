package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

const (
	// trimPeriod is how long the tunnel must be quiet before its memory is handed back.
	trimPeriod = 5 * time.Second
	// quietPackets is how many packets a quiet period may still carry: a client's watchdog pings,
	// DNS lookups and the like never end, and must not keep a bulk transfer's memory resident.
	quietPackets = 64
)

// trimWhenIdle returns the memory that traffic left behind to the system once the tunnel has
// carried (almost) no packets for a whole period. wireguard-go keeps a 64 KiB buffer for every packet in
// flight and pools them; after a bulk transfer the pools and the heap's free pages would
// otherwise stay resident for minutes (the collector runs only every two minutes when nothing
// allocates, and a pool needs two collections to empty).
func trimWhenIdle(ctx context.Context, t *netTUN) {
	tick := time.NewTicker(trimPeriod)
	defer tick.Stop()
	last, trimmed := t.packets.Load(), true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := t.packets.Load()
		busy := n-last >= quietPackets
		last = n
		switch {
		case busy:
			trimmed = false
		case !trimmed:
			runtime.GC() // the pools' contents become their victim caches, then garbage
			debug.FreeOSMemory()
			trimmed = true
		}
	}
}
