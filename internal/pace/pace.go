// Package pace turns an origin's spare capacity (limiter.Headroom) into the
// rate a storm may run at, in one place for every storm that takes its pace
// from it, with the same rules for bad readings and for a panicking
// Headroom.
package pace

import "math"

// Spare is limiter.Headroom's method set (this package does not import
// limiter, which imports nothing of the storms).
type Spare interface {
	Spare() float64
}

// None is the pace of "not paced": no cap.
var None = math.Inf(1)

// Read returns h's spare calls per second divided by per (origin calls per
// unit: per client told, per session admitted; per > 0): the units per
// second h leaves room for. A NaN or negative reading is 0, +Inf is None.
// A panic in h is recovered: Read then returns None and the recovered value
// (non-nil), so that the caller can log and count it; the storm then runs
// at its own configured rate, as it would without a Headroom.
func Read(h Spare, per float64) (p float64, panicked any) {
	defer func() {
		if r := recover(); r != nil {
			p, panicked = None, r
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
