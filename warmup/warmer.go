package warmup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/logthrottle"
	"github.com/herdcap/herdcap/observe"
)

// Warm is one warm-up: the keys of Source, hottest first, each fetched
// from the origin with Fetch and written to the cache with Store. Every
// node that takes part calls Warmer.Start with the same ID and Source
// (and its own Fetch and Store).
type Warm struct {
	// ID names the warm in the store, 1 to 256 bytes. Starting an ID the
	// store holds joins that warm.
	ID string
	// Source yields the items, hottest first; every node must see the
	// same sequence. Required, except to join a staged warm.
	Source Source
	// Staged copies Source's items into the store when this node
	// registers the warm (at most 1,000,000 items, checked as they are
	// copied), and every node then reads them from there: for a source
	// only one node has, such as its Sketch's Top. Nodes that join a
	// staged warm may leave Source nil. It costs the store the items
	// (about 40 bytes each plus the key on Redis). If the store loses
	// them (a Redis restart without persistence), the node that staged
	// them copies them again when it writes the warm back; if it is gone,
	// the warm's chunks cannot be read (each attempt is logged) until it
	// is started again under a new ID.
	Staged bool
	// Fetch reads key from the origin and returns its value and when it
	// was read (the zero time: the Warmer takes the moment just before
	// the call, which is earlier and so safe for the hold-off). It is
	// called on a worker goroutine, paced, under no lock of the Warmer; a
	// panic is recovered and the key reported failed. Required.
	Fetch func(ctx context.Context, key string) (value any, readAt time.Time, err error)
	// Store writes value, read at readAt, to the cache. It should be
	// add-only (memcache add, SET NX, or a version compare): a warm must
	// never overwrite a value a user's request wrote after readAt, which
	// only the cache can tell. A panic is recovered and the key reported
	// failed. Required.
	Store func(ctx context.Context, key string, value any, readAt time.Time) error
	// By names who started the warm, at most 256 bytes; empty means this
	// node. Kept by the first Start.
	By string
	// HitRate, if set, returns the cache's hit rate now, in [0, 1]; Status
	// samples it, so progress can show the hit rate recovering.
	HitRate func() float64
}

func (w *Warm) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidWarm}, args...)...)
	}
	switch {
	case w.ID == "" || len(w.ID) > maxIDLen:
		return bad("Warm.ID must be 1 to %d bytes, got %d", maxIDLen, len(w.ID))
	case w.Source == nil && !w.Staged:
		return bad("Warm.Source is nil")
	case w.Fetch == nil:
		return bad("Warm.Fetch is nil")
	case w.Store == nil:
		return bad("Warm.Store is nil")
	case len(w.By) > maxWhoLen:
		return bad("Warm.By must be at most %d bytes, got %d", maxWhoLen, len(w.By))
	}
	return nil
}

// Warmer is one node's part of the fleet's warms: Start registers a warm
// (or joins it), Run works on every warm this node has started until its
// context ends, and Pause, Resume, Abort and Status act on any warm of the
// store. Make one per node with New; it is safe for concurrent use.
//
// Each key is fetched once across the fleet: nodes claim chunks of the
// source (Config.ChunkSize items) with a TTL, renew the claim every
// Config.Interval, and mark the chunk done in the store when every item
// is warmed or failed. A node that stops (its Run's context ends) keeps
// its claims until they expire; another node then takes the chunk over.
// Every fetch is paced by Config.Guard (background lane) or
// Config.Budget, and every store is checked against the hold-off after
// deletes (Deleted).
type Warmer struct {
	cfg     config
	mu      sync.Mutex
	warms   map[string]*local
	order   []*local
	holdoff holdoff
	logs    logthrottle.Throttle // store failures
}

// local is what this node knows of one warm.
type local struct {
	w         Warm
	read      Source // w.Source, or the store's copy of a staged warm
	keys      int64
	chunkSize int
	stats     nodeStats
	restoring sync.Mutex // held by the worker writing the warm back

	mu         sync.Mutex
	gen        string
	phase      Phase
	done       bitset // chunks this node completed
	held       map[int64]struct{}
	failed     int64
	failedKeys []string
	rec        record // as last registered or read
}

type nodeStats struct {
	fetched, stored, duplicates, retries, panics, heldOff, refused, chunks atomic.Int64
}

func (s *nodeStats) load() NodeStats {
	return NodeStats{Fetched: s.fetched.Load(), Stored: s.stored.Load(), Duplicates: s.duplicates.Load(),
		Retries: s.retries.Load(), Panics: s.panics.Load(), HeldOff: s.heldOff.Load(), Refused: s.refused.Load(),
		Chunks: s.chunks.Load()}
}

// New returns a Warmer. A bad Config is an error wrapping
// limiter.ErrInvalidConfig that names the field.
func New(cfg Config) (*Warmer, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if rs, ok := c.Store.(*RedisStore); ok && cfg.Observe != nil {
		rs.guard.Attach(rs.name, cfg.Observe.Breaker)
	}
	return &Warmer{cfg: c, warms: map[string]*local{}, holdoff: holdoff{max: c.MaxDeletes, d: c.HoldOff}}, nil
}

func (wr *Warmer) nowUs() int64 {
	if wr.cfg.server {
		return -1
	}
	return wr.cfg.clock.Now().UnixMicro()
}

// Start registers w in the store, unless its ID is there already (then
// this node joins it), and makes it one of the warms this node's Run works
// on. Registering reads the whole source once, to check every item (see
// ErrInvalidWarm: an empty key, a NaN or negative weight, a weight above
// the one before it, named by position) and count them; joining reads
// nothing. Starting an ID this node has started before does nothing.
//
// Errors: a bad Warm or item (ErrInvalidWarm), the source's own error, a
// warm of the same ID with another key count or chunk size (ErrConflict),
// or the store's (ErrUnavailable).
func (wr *Warmer) Start(ctx context.Context, w Warm) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.By == "" {
		w.By = wr.cfg.Node
	}
	wr.mu.Lock()
	_, known := wr.warms[w.ID]
	wr.mu.Unlock()
	if known {
		return nil
	}
	rec, err := wr.cfg.Store.get(ctx, w.ID)
	created := false
	switch {
	case errors.Is(err, ErrUnknownWarm) && w.Source == nil:
		return fmt.Errorf("%w: Warm.Source is nil, and warm %q is not in the store to be joined", ErrInvalidWarm, w.ID)
	case errors.Is(err, ErrUnknownWarm):
		var keys int64
		var cerr error
		if w.Staged {
			keys, cerr = wr.stage(ctx, w.ID, w.Source)
		} else {
			keys, cerr = count(ctx, w.Source)
		}
		if cerr != nil {
			return cerr
		}
		rec, created, err = wr.cfg.Store.register(ctx, regReq{id: w.ID, keys: keys, chunkSize: wr.cfg.ChunkSize,
			staged: w.Staged, node: wr.cfg.Node, by: w.By, now: wr.nowUs()})
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if !rec.staged && w.Source == nil {
		return fmt.Errorf("%w: Warm.Source is nil, and warm %q is not staged", ErrInvalidWarm, w.ID)
	}
	l := &local{w: w, keys: rec.keys, chunkSize: rec.chunkSize, gen: rec.gen, phase: rec.phase, rec: rec, held: map[int64]struct{}{}}
	l.read = w.Source
	if rec.staged {
		l.read = stagedSource{store: wr.cfg.Store, id: w.ID}
	}
	wr.mu.Lock()
	if _, ok := wr.warms[w.ID]; !ok {
		wr.warms[w.ID] = l
		wr.order = append(wr.order, l)
	}
	wr.mu.Unlock()
	if created {
		wr.observe(observe.Warmup{Kind: observe.WarmupPhase, ID: w.ID, Phase: rec.phase.String()})
	}
	wr.cfg.log.Info("herdcap: warm started", "id", w.ID, "by", w.By, "node", wr.cfg.Node, "created", created,
		"keys", rec.keys, "chunk_size", rec.chunkSize, "phase", rec.phase.String())
	return nil
}

// count reads src once, checking every item, and returns how many it has.
func count(ctx context.Context, src Source) (int64, error) { return scan(ctx, src, nil) }

// scan reads src once, checking every item and passing each to each (if
// not nil), and returns how many it has.
func scan(ctx context.Context, src Source, each func(Item) error) (int64, error) {
	var n int64
	prev := math.Inf(1)
	for it, err := range src.Items(ctx, 0) {
		if err != nil {
			return n, err
		}
		if err := checkItem(n, it, prev); err != nil {
			return n, err
		}
		if each != nil {
			if err := each(it); err != nil {
				return n, err
			}
		}
		prev = it.Weight
		n++
		if n&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// maxStaged bounds a staged warm's items.
const maxStaged = 1_000_000

// stageBatch is the items copied to the store per call.
const stageBatch = 1000

// stage copies src's items, checked, to this node's staging area for warm
// id, in batches, and returns how many there are.
func (wr *Warmer) stage(ctx context.Context, id string, src Source) (int64, error) {
	batch := make([]Item, 0, stageBatch)
	first := true
	flush := func() error {
		err := wr.cfg.Store.stage(ctx, id, wr.cfg.Node, batch, first)
		batch, first = batch[:0], false
		return err
	}
	n, err := scan(ctx, src, func(it Item) error {
		batch = append(batch, it)
		if len(batch) == stageBatch {
			return flush()
		}
		return nil
	})
	if err == nil && n > maxStaged {
		return n, fmt.Errorf("%w: Warm.Staged: the source has %d items, more than %d", ErrInvalidWarm, n, maxStaged)
	}
	if err == nil && (len(batch) > 0 || first) {
		err = flush()
	}
	return n, err
}

// Pause stops warm id fleet-wide, on behalf of by: no chunk is claimed and
// no key fetched until Resume; nodes see it within Config.Interval (a
// fetch under way completes). Pausing a paused warm does nothing; a
// finished one fails with ErrFinished, an unknown one with
// ErrUnknownWarm, a By out of range with ErrInvalidArgument.
func (wr *Warmer) Pause(ctx context.Context, id string, by By) error {
	return wr.control(ctx, id, actPause, by)
}

// Resume lets a paused warm go on, on behalf of by. Resuming a running
// warm does nothing; see Pause for errors.
func (wr *Warmer) Resume(ctx context.Context, id string, by By) error {
	return wr.control(ctx, id, actResume, by)
}

// Abort stops warm id for good, fleet-wide, on behalf of by; nodes see it
// within Config.Interval. Aborting an aborted warm does nothing; a done
// one fails with ErrFinished; see Pause for other errors.
func (wr *Warmer) Abort(ctx context.Context, id string, by By) error {
	return wr.control(ctx, id, actAbort, by)
}

func (wr *Warmer) control(ctx context.Context, id string, act action, by By) error {
	if err := by.check(); err != nil {
		return err
	}
	if by.Who == "" {
		by.Who = wr.cfg.Node
	}
	rec, changed, err := wr.cfg.Store.control(ctx, id, act, by, wr.nowUs())
	if err != nil && !errors.Is(err, ErrFinished) {
		wr.cfg.log.Warn("herdcap: warm "+act.String()+" failed", "id", id, "by", by.Who, "reason", by.Reason, "node", wr.cfg.Node, "err", err)
		return err
	}
	was := Phase(0)
	if l := wr.lookup(id); l != nil {
		l.mu.Lock()
		was = l.phase
		l.phase, l.rec = rec.phase, rec
		l.mu.Unlock()
	}
	if err == nil && (changed || was != rec.phase) {
		wr.observe(observe.Warmup{Kind: observe.WarmupPhase, ID: id, Phase: rec.phase.String(), Reason: by.Reason})
	}
	if err != nil {
		return fmt.Errorf("%w: warm %q is %v", err, id, rec.phase)
	}
	wr.cfg.log.Info("herdcap: warm "+act.String(), "id", id, "by", by.Who, "reason", by.Reason, "node", wr.cfg.Node,
		"changed", changed, "phase", rec.phase.String(), "done_chunks", rec.doneChunks, "chunks", rec.chunks())
	return nil
}

func (wr *Warmer) lookup(id string) *local {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.warms[id]
}

// Status returns warm id as the store holds it, with this node's counts
// and (if this node started it with a HitRate hook) the hit rate now.
// Errors: ErrUnknownWarm, or the store's.
func (wr *Warmer) Status(ctx context.Context, id string) (Status, error) {
	rec, err := wr.cfg.Store.get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	now := wr.cfg.clock.Now().UnixMicro()
	if wr.cfg.server && rec.updatedUs > now {
		now = rec.updatedUs // the store's clock is ahead of ours
	}
	st := Status{ID: rec.id, Phase: rec.phase, StartedBy: rec.startedBy, By: rec.by, Keys: rec.keys, ChunkSize: rec.chunkSize,
		Chunks: rec.chunks(), DoneChunks: rec.doneChunks, Claimed: rec.claimed, Done: rec.doneKeys(), Failed: rec.failed,
		FailedKeys: rec.failedKeys, HitRate: math.NaN(),
		StartedAt: usTime(rec.startedUs), UpdatedAt: usTime(rec.updatedUs), FinishedAt: usTime(rec.finishedUs)}
	if run := rec.running(now); run > 0 {
		st.Rate = float64(st.Done) / (float64(run) / 1e6)
	}
	if !rec.phase.Finished() && st.Rate > 0 {
		st.ETA = time.Duration(float64(rec.keys-st.Done) / st.Rate * float64(time.Second))
	}
	if l := wr.lookup(id); l != nil {
		st.Node = l.stats.load()
		if l.w.HitRate != nil {
			st.HitRate = sampleHitRate(l.w.HitRate)
		}
	}
	return st, nil
}

func sampleHitRate(f func() float64) (v float64) {
	defer func() {
		if recover() != nil {
			v = math.NaN()
		}
	}()
	v = f()
	if !(v >= 0 && v <= 1) {
		return math.NaN()
	}
	return v
}

func usTime(us int64) time.Time {
	if us <= 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// Deleted records that key was deleted from the cache now: for
// Config.HoldOff, a warm does not store a value of key read before now +
// HoldOff, since it may predate the write that the delete announced
// (memcache's hold-off). Call it from the code that deletes, on every node
// (the hold-off is per node, as memcache's is per server; with a cache the
// nodes share, it belongs in the cache as a tombstone: see the package
// doc). It is cheap and safe for concurrent use.
func (wr *Warmer) Deleted(key string) { wr.holdoff.deleted(key, wr.cfg.clock.Now()) }
