// Package pace turns an origin's spare capacity (limiter.Headroom) into the
// rate a storm may run at, in one place for every storm that takes its pace
// from it, with the same rules for bad readings and for a panicking
// Headroom.
package pace

import (
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
)

// Spare is limiter.Headroom's method set (limiter imports nothing of the
// storms, and this package needs nothing else of it).
type Spare interface {
	Spare() float64
}

// None is the pace of "not paced": no cap.
var None = math.Inf(1)

// Per validates a Config's calls-per-unit field: 0 means 1; otherwise it
// must be finite and > 0. It returns the resolved value and whether v was
// valid.
func Per(v float64) (float64, bool) {
	switch {
	case v == 0:
		return 1, true
	case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
		return 0, false
	}
	return v, true
}

// Reader reads one storm's Headroom. Its zero value is not usable: set H,
// Per (> 0), Log (non-nil), What (the storm, for the log: "invalidation")
// and Attrs (logged with every line). Read is safe for concurrent use.
type Reader struct {
	H     Spare
	Per   float64
	Log   *slog.Logger
	What  string
	Attrs []any

	bad    atomic.Bool   // the last read panicked
	panics atomic.Uint64 // panics recovered
}

// Read returns the units per second (clients told, sessions admitted) H's
// spare calls per second leave room for: Spare ÷ Per. A NaN or negative
// reading is 0, +Inf is None. A panic in H is recovered and counted, and
// logged at the first of a run of panics (and again, at Info, when H
// answers after one); Read then returns None, so the storm runs at its own
// configured rate, as it would without a Headroom.
func (r *Reader) Read() float64 {
	p, panicked := read(r.H, r.Per)
	if panicked != nil {
		n := r.panics.Add(1)
		if !r.bad.Swap(true) {
			r.Log.Error("herdcap: "+r.What+" headroom panicked; running at the configured rate until it answers",
				append(r.Attrs[:len(r.Attrs):len(r.Attrs)], "panic", fmt.Sprint(panicked), "panics", n)...)
		}
	} else if r.bad.Load() && r.bad.Swap(false) {
		r.Log.Info("herdcap: "+r.What+" headroom answers again", append(r.Attrs[:len(r.Attrs):len(r.Attrs)], "panics", r.panics.Load())...)
	}
	return p
}

// Panics returns the number of panics Read recovered.
func (r *Reader) Panics() uint64 { return r.panics.Load() }

func read(h Spare, per float64) (p float64, panicked any) {
	defer func() {
		if v := recover(); v != nil {
			p, panicked = None, v
		}
	}()
	s := h.Spare()
	switch {
	case math.IsNaN(s) || s <= 0:
		return 0, nil
	case math.IsInf(s, 1):
		return None, nil
	}
	return s / per, nil
}
