package warmup

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/observe"
)

// Config configures a Warmer. Store and one of Guard or Budget are
// required; every other zero field takes its default. Chunk and claim
// settings should be the same on every node of a fleet (a warm's chunk
// size is fixed by the node that registers it).
type Config struct {
	// Store holds the warms: NewMemoryStore for one process,
	// NewRedisStore for a fleet. Required.
	Store Store
	// Node names this node in claims and logs, unique in the fleet. If
	// Node is "", a random name. At most 256 bytes.
	Node string
	// Guard paces fetches through the origin's guard in the
	// origin.Background lane: a fetch takes only what the foreground
	// leaves (see origin.Lane). Exactly one of Guard and Budget must be
	// set.
	Guard *origin.Guard
	// Budget paces fetches at a fixed rate: one token of key BudgetKey
	// per fetch (retries included), taken at once when the bucket has one
	// (on a fleet.Leased budget, from the node's lease: no round trip),
	// else booked up to Interval ahead (limiter.Request.Wait) and waited
	// for, so that the workers of a fleet go at the budget's rate. Exactly
	// one of Guard and Budget must be set.
	Budget limiter.Budget
	// BudgetKey is the Budget's key. If BudgetKey is "", "warmup".
	BudgetKey string
	// ChunkSize is the number of items per chunk, the unit nodes claim,
	// checkpoint and (on a restart mid-chunk) fetch again. If ChunkSize
	// is 0, 1000; at most 1,000,000.
	ChunkSize int
	// ClaimTTL is how long a claim on a chunk lasts unless renewed: a node
	// that dies holding a claim loses it this long after its last renewal
	// and another node takes the chunk over. A claim is renewed between
	// keys, so a single fetch (with its pacing wait) that takes longer
	// than ClaimTTL may lose the chunk to another node, which then fetches
	// it again. If ClaimTTL is 0, 10 s; it must be at least 2 × Interval.
	ClaimTTL time.Duration
	// Interval is how often a node renews its claims, sees a pause,
	// resume or abort, and polls for work when it has none. If Interval
	// is 0, 1 s; at least 1 ms.
	Interval time.Duration
	// Workers is the number of chunks this node works on at once, each
	// fetching one key at a time. If Workers is 0, 4; at most 1024.
	Workers int
	// Retries is how many times a failed fetch or store is tried again
	// before the key is reported failed. If Retries is 0, 3; -1 means
	// none.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled for each
	// further one. If RetryBackoff is 0, 100 ms.
	RetryBackoff time.Duration
	// HoldOff is how long after a delete (Warmer.Deleted) a value read
	// before that moment plus HoldOff is not stored. If HoldOff is 0,
	// 2 s (memcache's); -1 disables it.
	HoldOff time.Duration
	// MaxDeletes bounds the deletes remembered for the hold-off. When more
	// are recent, the oldest are forgotten and every value read before the
	// newest forgotten delete + HoldOff is held off (a safe excess). If
	// MaxDeletes is 0, 65536.
	MaxDeletes int
	// MaxFailedKeys bounds the failed keys a warm lists (Status.FailedKeys);
	// all are counted. If MaxFailedKeys is 0, 100; -1 lists none.
	MaxFailedKeys int
	// Clock is the clock of pacing waits, claims and progress; nil is the
	// system clock (and the Redis store then uses Redis TIME for claims,
	// so node clocks need not agree).
	Clock limiter.Clock
	// Logger receives starts, controls (with By), failed keys (Debug) and
	// store outages (Warn). If Logger is nil, nothing is logged.
	Logger *slog.Logger
	// Observe receives this node's warm-up events (observe.Warmup: chunks
	// it completed, keys it failed, phase changes it made or learned),
	// read once by New, and, on a RedisStore, its breaker's changes
	// (observe.Breaker, named after the store's Redis.Name; the first
	// Warmer made on the store with a Breaker hook gets them). Nil: none.
	Observe *observe.Hooks
}

// Defaults of Config's zero fields.
const (
	defaultChunk        = 1000
	maxChunk            = 1_000_000
	defaultClaimTTL     = 10 * time.Second
	defaultInterval     = time.Second
	defaultWorkers      = 4
	maxWorkers          = 1024
	defaultRetries      = 3
	defaultRetryBackoff = 100 * time.Millisecond
	defaultHoldOff      = 2 * time.Second
	defaultMaxDeletes   = 1 << 16
	defaultMaxFailed    = 100
)

type config struct {
	Config
	clock  limiter.Clock
	server bool // store times from the store's own clock
	log    *slog.Logger
	onWarm func(observe.Warmup) // Observe.Warmup; nil: none
}

func (c Config) resolve() (config, error) {
	bad := func(format string, args ...any) (config, error) {
		return config{}, fmt.Errorf("%w: "+format, append([]any{limiter.ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.Store == nil:
		return bad("Config.Store is nil: use NewMemoryStore or NewRedisStore")
	case c.Guard == nil && c.Budget == nil:
		return bad("Config.Guard and Config.Budget are both nil: a warm must be paced by one")
	case c.Guard != nil && c.Budget != nil:
		return bad("Config.Guard and Config.Budget are both set: set one")
	case len(c.Node) > maxWhoLen:
		return bad("Config.Node must be at most %d bytes, got %d", maxWhoLen, len(c.Node))
	case c.ChunkSize < 0 || c.ChunkSize > maxChunk:
		return bad("Config.ChunkSize must be 0 (default %d) to %d, got %d", defaultChunk, maxChunk, c.ChunkSize)
	case c.ClaimTTL < 0:
		return bad("Config.ClaimTTL must be >= 0 (0 means %v), got %v", defaultClaimTTL, c.ClaimTTL)
	case c.Interval < 0 || (c.Interval > 0 && c.Interval < time.Millisecond):
		return bad("Config.Interval must be 0 (default %v) or at least 1ms, got %v", defaultInterval, c.Interval)
	case c.Workers < 0 || c.Workers > maxWorkers:
		return bad("Config.Workers must be 0 (default %d) to %d, got %d", defaultWorkers, maxWorkers, c.Workers)
	case c.Retries < -1:
		return bad("Config.Retries must be >= -1 (-1: none, 0: default %d), got %d", defaultRetries, c.Retries)
	case c.RetryBackoff < 0:
		return bad("Config.RetryBackoff must be >= 0, got %v", c.RetryBackoff)
	case c.HoldOff < -1:
		return bad("Config.HoldOff must be >= -1 (-1: none, 0: default %v), got %v", defaultHoldOff, c.HoldOff)
	case c.MaxDeletes < 0:
		return bad("Config.MaxDeletes must be >= 0, got %d", c.MaxDeletes)
	case c.MaxFailedKeys < -1:
		return bad("Config.MaxFailedKeys must be >= -1, got %d", c.MaxFailedKeys)
	}
	if c.Node == "" {
		c.Node = "node-" + newGen()
	}
	if c.BudgetKey == "" {
		c.BudgetKey = "warmup"
	}
	c.ChunkSize = orInt(c.ChunkSize, defaultChunk)
	c.Interval = orDur(c.Interval, defaultInterval)
	c.ClaimTTL = orDur(c.ClaimTTL, defaultClaimTTL)
	if c.ClaimTTL < 2*c.Interval {
		return bad("Config.ClaimTTL (%v) must be at least 2 × Config.Interval (%v): a claim is renewed every Interval", c.ClaimTTL, c.Interval)
	}
	c.Workers = orInt(c.Workers, defaultWorkers)
	c.Retries = orNone(c.Retries, defaultRetries)
	c.RetryBackoff = orDur(c.RetryBackoff, defaultRetryBackoff)
	c.HoldOff = orNone(c.HoldOff, defaultHoldOff)
	c.MaxDeletes = orInt(c.MaxDeletes, defaultMaxDeletes)
	c.MaxFailedKeys = orNone(c.MaxFailedKeys, defaultMaxFailed)
	out := config{Config: c, clock: sysclock.Or(c.Clock), server: c.Clock == nil, log: c.Logger}
	if c.Observe != nil {
		out.onWarm = c.Observe.Warmup
	}
	if _, mem := c.Store.(*MemoryStore); mem {
		out.server = false
	}
	if out.log == nil {
		out.log = slog.New(slog.DiscardHandler)
	}
	return out, nil
}

// orNone reads a field where 0 means def and -1 means none (0).
func orNone[T int | time.Duration](v, def T) T {
	switch v {
	case 0:
		return def
	case -1:
		return 0
	}
	return v
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
