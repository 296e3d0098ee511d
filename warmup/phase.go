package warmup

import (
	"fmt"
	"time"
)

// Phase is where a warm stands, in the words of invalidate's rollouts.
type Phase uint8

const (
	// Running: nodes claim chunks and fetch their keys.
	Running Phase = iota + 1
	// Paused: no chunk is claimed and no key fetched until Resume.
	Paused
	// Aborted: no key will be fetched any more.
	Aborted
	// Done: every chunk is done (each key warmed or failed).
	Done
)

var phaseNames = [...]string{Running: "running", Paused: "paused", Aborted: "aborted", Done: "done"}

// String returns "running", "paused", "aborted" or "done".
func (p Phase) String() string {
	if p >= Running && p <= Done {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Finished reports whether p is Aborted or Done.
func (p Phase) Finished() bool { return p == Aborted || p == Done }

// By says who asks for a Pause, Resume or Abort, and why, as invalidate.By
// does: both are logged with the action and kept in the warm's Status. The
// zero value means this node (Config.Node), no reason.
type By struct {
	// Who names who asked, at most 256 bytes; empty means this node.
	Who string
	// Reason says why, at most 1024 bytes; may be empty.
	Reason string
}

const (
	maxWhoLen    = 256
	maxReasonLen = 1024
	maxIDLen     = 256
)

// check reports a field of b out of range, naming it.
func (b By) check() error {
	for _, f := range [...]struct {
		name   string
		n, max int
	}{{"By.Who", len(b.Who), maxWhoLen}, {"By.Reason", len(b.Reason), maxReasonLen}} {
		if f.n > f.max {
			return fmt.Errorf("%w: %s must be at most %d bytes, got %d", ErrInvalidArgument, f.name, f.max, f.n)
		}
	}
	return nil
}

// Status is a warm as the store holds it, with this node's counts.
type Status struct {
	// ID is the warm's ID.
	ID string
	// Phase is where it stands.
	Phase Phase
	// StartedBy is Warm.By of the node that registered it.
	StartedBy string
	// By is who made the last Pause, Resume or Abort, and why (zero if
	// none was made).
	By By
	// Keys is the number of items in the source, counted when the warm
	// was registered; ChunkSize the items per chunk; Chunks the number of
	// chunks, ceil(Keys / ChunkSize).
	Keys      int64
	ChunkSize int
	Chunks    int64
	// DoneChunks is the number of chunks done; Claimed the number of
	// chunks nodes hold now (expired claims included until taken over).
	DoneChunks int64
	Claimed    int64
	// Done is the number of items in done chunks: warmed, failed or
	// skipped as duplicates.
	Done int64
	// Failed is the number of keys reported failed (fetch or store errors
	// past the retry budget, panics); FailedKeys the most recent of them,
	// at most Config.MaxFailedKeys, newest first.
	Failed     int64
	FailedKeys []string
	// Rate is Done per second of running time (paused time excluded);
	// ETA the running time the rest would take at that rate (0 when
	// finished or not yet known).
	Rate float64
	ETA  time.Duration
	// HitRate is Warm.HitRate sampled now by this node, NaN without a
	// hook (or when it panics or returns a value outside [0, 1]).
	HitRate float64
	// StartedAt is when the warm was registered; UpdatedAt when a chunk
	// was last done or the phase last changed; FinishedAt when it was
	// done or aborted (zero before).
	StartedAt, UpdatedAt, FinishedAt time.Time
	// Node is this node's counts for the warm.
	Node NodeStats
}

// NodeStats counts one node's work on a warm since its Warmer was made.
type NodeStats struct {
	// Fetched counts successful fetches; Stored successful stores.
	Fetched, Stored int64
	// Duplicates counts items skipped because their key came earlier in
	// the same chunk.
	Duplicates int64
	// Retries counts fetch and store attempts retried after an error.
	Retries int64
	// Panics counts fetches and stores that panicked (recovered; the key
	// is reported failed).
	Panics int64
	// HeldOff counts values not stored because they were read before a
	// delete of their key plus Config.HoldOff.
	HeldOff int64
	// Refused counts pacing refusals waited out (guard or budget).
	Refused int64
	// Chunks counts chunks this node completed.
	Chunks int64
}
