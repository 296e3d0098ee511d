package limiter

// Headroom reports an origin's spare capacity: Spare returns the origin
// calls per second that its foreground traffic leaves unused, >= 0
// (headroom.Origin implements it). Storms that may take their pace from it
// (invalidate's rollouts, admission's gates) run at most as fast as the
// spare allows and never faster than their own configured rate: as fast as
// the origin can take, never faster.
//
// Spare must be safe for concurrent use and cheap: its callers read it at
// most once per advance or decision interval, never under their own locks.
// They treat a NaN or negative result as 0 (no spare capacity: nothing is
// paced through) and +Inf as no cap, and recover from a panic by ignoring
// the headroom (their configured rate alone applies).
type Headroom interface {
	Spare() float64
}
