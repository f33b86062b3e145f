package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// trimPeriod is how long the tunnel must be quiet before its memory is handed back.
const trimPeriod = 5 * time.Second

// trimWhenIdle returns the memory that traffic left behind to the system once the tunnel has
// carried no packet for a whole period. wireguard-go keeps a 64 KiB buffer for every packet in
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
		switch {
		case n != last:
			last, trimmed = n, false
		case !trimmed:
			runtime.GC() // the pools' contents become their victim caches, then garbage
			debug.FreeOSMemory()
			trimmed = true
		}
	}
}
