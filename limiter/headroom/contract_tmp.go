package headroom

import "github.com/herdcap/herdcap/limiter/origin"

// TODO(branch lanes): delete this file once limiter/origin defines Lane,
// Foreground, Background and Refused, and replace Lane, Foreground,
// Background and Refused in this package by origin.Lane, origin.Foreground,
// origin.Background and origin.Refused (then add
// var _ origin.Headroom = (*Origin)(nil) to headroom.go). These are local
// copies of the declarations fixed in the contract with limiter/origin.

// Lane is origin.Lane: the priority lane of a call.
type Lane uint8

// The lanes (origin.Foreground, origin.Background).
const (
	// Foreground is online traffic.
	Foreground Lane = iota
	// Background is offline work: refetches, warm-ups.
	Background
)

// Refused is origin.Refused: a call the guard refused, which never reached
// the origin (demand that was not served).
const Refused origin.Outcome = origin.Canceled + 1
