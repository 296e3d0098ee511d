package invalidate

import (
	"context"

	"github.com/herdcap/herdcap/limiter"
)

// Store is where the rollouts of a namespace live: NewMemoryStore (one
// process) or NewRedisStore (a fleet). Every node of a fleet uses a store
// on the same Redis and namespace; the store makes each operation atomic,
// so any node may start, control and advance any rollout. Both stores pass
// one conformance suite and, given the same calls at the same times, make
// the same releases.
//
// The methods are unexported: a Store is passed to NewCoordinator and used
// only through it. Stores are safe for concurrent use.
type Store interface {
	// start registers a rollout unless its ID exists.
	start(ctx context.Context, req startReq) (startRes, error)
	// get returns one rollout, or ErrUnknownRollout.
	get(ctx context.Context, id string) (record, error)
	// control pauses, resumes or aborts a rollout.
	control(ctx context.Context, id string, act action, now stamp, gen string) (rec record, changed bool, err error)
	// advance releases what the pace allows in every running rollout,
	// merges a population sketch, purges expired rollouts and returns the
	// released-wave state if it changed since known: one round trip.
	advance(ctx context.Context, req advanceReq) (advanceRes, error)
	// snapshot returns the released-wave state if it changed since known:
	// one round trip.
	snapshot(ctx context.Context, known version) (snapshot, error)
	// restore re-registers rollouts a node knows after the store lost them,
	// merging with what it holds; an unfinished rollout it writes anew is
	// held for graceUs.
	restore(ctx context.Context, recs []record, now stamp, graceUs int64, gen string) (int, error)
	// startBudget returns the default budget of guarded starts, shared by
	// every coordinator on the store (on Redis, by every node of the
	// fleet), on clock (nil: its own), and a function to call once done
	// with it.
	startBudget(clock limiter.Clock) (b limiter.Budget, done func(), err error)
	// name says which store this is, for logs.
	name() string
}

// stamp is a time for the store: us (µs since the Unix epoch), or, when
// server is set, "use your own clock" (Redis TIME; the memory store has no
// other clock and uses us).
type stamp struct {
	us     int64
	server bool
}

// version identifies a state of the store: gen is a random token written
// when the store's metadata is created (so a store that lost its data, and
// was written again, has a new gen, or none while empty), ver counts the
// changes of released counts and phases under that gen.
type version struct {
	ver uint64
	gen string
}

type startReq struct {
	r         Rollout // as requested
	st        state   // template: epoch (0: assign), cohorts, pace, clients, pop, guarded
	now       stamp
	floor     uint64 // an assigned epoch is above this (the highest this node knows)
	jump      uint64 // an explicit epoch is at most max(highest+1, now in ms + jump)
	holdUs    int64  // > 0: no running time counts for this long after the start (warm-up)
	max       int    // the most rollouts the namespace may hold
	retention int64  // µs a finished rollout is kept
	gen       string
	dryRun    bool // check only: answer startWouldCreate instead of creating
}

type startCode uint8

const (
	startCreated startCode = iota
	startExists
	startBackwards
	startTooMany
	startTooFar      // the explicit epoch is above ceil
	startWouldCreate // dry run: every check passed
)

type startRes struct {
	code startCode
	rec  record // created or existing
	err  error  // startExists: the existing record could not be decoded
	seq  uint64 // startBackwards, startTooFar: the namespace's highest epoch
	ceil uint64 // startTooFar: the highest explicit epoch allowed now
}

type advanceReq struct {
	now       stamp
	holdUs    int64   // > 0: a health hold of this length
	waveUs    int64   // the most running time one advance may bank
	pace      float64 // clients/s the origin's headroom allows, >= 0; +Inf: not paced
	retention int64   // µs a finished rollout is kept
	window    int64   // population window index; < 0: no counting
	windowTTL int64   // ms a window's sketch is kept
	sketch    []byte  // a dense HyperLogLog to merge, or nil
	known     version
	gen       string
}

type advanceRes struct {
	pop  int64 // distinct clients in the current and previous window
	snap snapshot
}

// snapshot is the released-wave state: every rollout the namespace holds.
// When changed is false the store had nothing new since the known version
// and recs is empty.
type snapshot struct {
	ver     version
	changed bool
	recs    []record
	corrupt int // records skipped because they could not be decoded
}
