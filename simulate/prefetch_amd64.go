package simulate

import "unsafe"

// prefetchEvents asks the CPU to bring closer, without waiting for it,
// the cache line at base + id × stride for each of the n events from ev
// (their id at offset 8, as in event): the state those events will read.
//
//go:noescape
func prefetchEvents(ev *event, n int, base unsafe.Pointer, stride uintptr)
