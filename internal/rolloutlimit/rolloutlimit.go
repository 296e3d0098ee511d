// Package rolloutlimit holds the bounds on the text fields of a rollout
// that travel in a notice, its ID and scope: invalidate enforces them when
// a rollout starts, and the wire format when it parses a notice, so that
// whatever a server may send, a client accepts. (The bound on epochs is
// invalidate.MaxEpoch, which clients may need too.)
package rolloutlimit

const (
	// MaxIDLen is the longest rollout ID, in bytes.
	MaxIDLen = 256
	// MaxScopeLen is the longest scope, in bytes.
	MaxScopeLen = 4096
)
