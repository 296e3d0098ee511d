package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/herdcap/herdcap/internal/pace"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// Config configures NewCoordinator. The zero value is the default
// configuration: every field states its default and its range, and
// NewCoordinator refuses a field out of range with an error that wraps
// ErrInvalidConfig and names it (Config.CacheTTL, Config.Guard.Share, ...).
type Config struct {
	// Clock is the source of time: the times the store records, AppendDue's
	// cache's age, the population window and Run's timer. If Clock is nil,
	// the system clock, and on a RedisStore the store records Redis TIME.
	// An injected clock's time is passed to the Redis scripts instead, so
	// that tests and the storm simulator drive a fleet in virtual time.
	Clock limiter.Clock
	// Node names this node, unique in the fleet: it is logged with every
	// action of this coordinator, stands for "who" when a By leaves Who
	// empty, and keys this node's budget of guarded starts ("node:" +
	// Node). If Node is "", "node-" and eight random hex digits. At most
	// 256 bytes.
	Node string
	// Logger receives starts, refusals, pauses, resumes, aborts, holds,
	// failed advances and re-registrations; the failures of this
	// coordinator's pushers; and the breaker transitions of its RedisStore
	// (the first coordinator's on a store with a logger). If Logger is nil,
	// nothing is logged.
	Logger *slog.Logger
	// Observe receives rollout events (observe.Rollout: started, cohorts
	// released, paused with its reason, resumed, aborted, completed) as
	// this node learns them (see the package doc, "Observing"), read once
	// by NewCoordinator, and, on a RedisStore, its breaker's changes
	// (observe.Breaker, named after the store's Redis.Name; the first
	// coordinator made on the store with a Breaker hook gets them). Nil:
	// none.
	Observe *observe.Hooks
	// CacheTTL is how long AppendDue answers from the released-wave state
	// this node last read, making no store call; a release, pause or abort
	// reaches this node's answers within the TTL, or at its next advance
	// if sooner. If CacheTTL is 0, 1 s; if it is negative, every AppendDue
	// reads the store.
	CacheTTL time.Duration
	// AdvanceInterval is how often Run advances. It also sizes a wave (an
	// advance releases at most one cohort plus Rate × AdvanceInterval
	// clients) and is the length of a health hold. If AdvanceInterval is
	// 0, 1 s; otherwise at least 1 ms.
	AdvanceInterval time.Duration
	// Retention is how long a finished rollout stays in the store, so that
	// clients that were away still get its notice; a client away longer
	// must treat its cache as stale on its own. If Retention is 0, 24 h;
	// otherwise at least 1 s.
	Retention time.Duration
	// MaxRollouts bounds the rollouts a namespace holds, finished ones
	// included (it bounds the work of every advance and snapshot); Start
	// beyond it fails with ErrTooManyRollouts. If MaxRollouts is 0, 1024;
	// otherwise 1 to 65,536.
	MaxRollouts int
	// Health is the health input of advances (see Health). If Health is
	// nil, the origin is always healthy.
	Health Health
	// Headroom, if set, paces rollouts by the origin's spare capacity:
	// each advance reads Headroom.Spare once (without locks) and every
	// running rollout releases at the lesser of its own rate and Spare ÷
	// CallsPerClient clients per second, its MinDuration (and the guard's)
	// still binding: as fast as the origin can take, never faster than
	// configured. A spare of 0 (or NaN, or negative) releases nothing
	// until it rises, but is no health hold; +Inf is no cap; a panic in
	// Spare is recovered, logged and counted, and that advance is not
	// paced. If Headroom is nil, rollouts run at their own rate.
	Headroom limiter.Headroom
	// CallsPerClient is how many origin calls one told client causes (its
	// refetches), to turn Headroom's spare calls per second into clients
	// per second. If CallsPerClient is 0, 1; otherwise finite and > 0.
	// Unused without Headroom.
	CallsPerClient float64
	// Guard treats broad invalidations as suspect (see Guard). Its zero
	// value has every field at its default.
	Guard Guard
	// PopulationWindow is the window of the fleet-wide estimate of
	// distinct clients: the clients whose AppendDue calls any node saw in
	// the current or the previous window count. If PopulationWindow is 0,
	// 10 min; if it is negative, nothing is counted and the pace uses
	// Rollout.Clients and PopulationFloor alone; otherwise at least 1 s.
	PopulationWindow time.Duration
	// PopulationFloor is the least population the pace of any rollout
	// assumes, in clients: the pace is computed from the largest of
	// Rollout.Clients, the store's estimate and this floor. A coordinator
	// that does not count (PopulationWindow negative) refuses rollouts of
	// unknown population (Rollout.Clients 0) unless it has a floor. 0 (the
	// default: none) to 2^40.
	PopulationFloor int
	// PopulationWarmup is how long a rollout of unknown population
	// (Rollout.Clients 0) releases nothing after its start, so that the
	// fleet's estimate has seen the clients polling meanwhile and the pace
	// comes from a warm estimate, not from the few clients seen before the
	// start. Choose at least the clients' poll interval plus one advance
	// interval: a client is counted when it polls, and its node merges the
	// count at its next advance. If PopulationWarmup is 0, 30 s or two
	// advance intervals, whichever is longer; otherwise at least
	// AdvanceInterval. Unused when nothing is counted.
	PopulationWarmup time.Duration
	// MaxEpochJump bounds an explicit Rollout.Epoch: at most MaxEpochJump
	// above the store's clock in milliseconds (the sequence the store
	// assigns epochs from), or only the next epoch when the namespace is
	// already past that; further is ErrEpochTooFar. So no single start can
	// exhaust the epoch space, and since the bound follows the clock, not
	// the namespace's highest epoch, repeated starts cannot ratchet it up.
	// If MaxEpochJump is 0, 86,400,000 (one day of the sequence);
	// otherwise at most MaxEpoch.
	MaxEpochJump uint64
	// RestoreGrace is how long a rollout re-registered after the store
	// lost its data releases nothing, so that the node that aborted it
	// re-registers the abort before a node with an older view, which saw
	// it running, releases another cohort (see the package documentation
	// on durability). Choose at least the longest advance interval of the
	// fleet plus the store's breaker open period. If RestoreGrace is 0,
	// three advance intervals plus, on a RedisStore, its
	// fleet.Redis.BreakerOpen; if it is negative, no grace.
	RestoreGrace time.Duration
}

// Defaults and bounds of Config's fields.
const (
	defaultCacheTTL         = time.Second
	defaultAdvanceInterval  = time.Second
	defaultRetention        = 24 * time.Hour
	defaultMaxRollouts      = 1024
	maxMaxRollouts          = 1 << 16
	defaultPopulationWindow = 10 * time.Minute
	defaultPopulationWarmup = 30 * time.Second
	// defaultMaxEpochJump is one day of the epoch sequence, in ms.
	defaultMaxEpochJump uint64 = 24 * 60 * 60 * 1000
	maxNodeLen                 = 256
)

// Health reports whether the origin behind the clients' caches can take
// refetches now. While it reports false on any node, that node's advances
// hold every running rollout: nothing is released, and the held time does
// not count toward progress. It is called without locks, once per advance,
// and must be safe for concurrent use.
type Health interface {
	Healthy(ctx context.Context) bool
}

// HealthFunc adapts a function to Health.
type HealthFunc func(ctx context.Context) bool

// Healthy calls f.
func (f HealthFunc) Healthy(ctx context.Context) bool { return f(ctx) }

// settings is a Config validated, with every default resolved.
type settings struct {
	clock       limiter.Clock // never nil
	injected    bool          // Config.Clock was set: its time goes to the store
	node        string
	log         *slog.Logger // never nil
	cacheTTL    time.Duration
	every       time.Duration
	retention   time.Duration
	maxRollouts int
	health      Health
	headroom    limiter.Headroom
	perClient   float64       // origin calls per client told, > 0
	guard       Guard         // every field resolved but Starts
	window      time.Duration // 0: no counting
	popFloor    int
	warmup      time.Duration // 0 with counting off
	epochJump   uint64
	grace       time.Duration
}

// resolve validates cfg and fills in its defaults. The store decides the
// default restore grace (a RedisStore adds its breaker's open period).
func (cfg Config) resolve(s Store) (settings, error) {
	bad := func(format string, args ...any) (settings, error) {
		return settings{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case len(cfg.Node) > maxNodeLen:
		return bad("Config.Node must be at most %d bytes, got %d", maxNodeLen, len(cfg.Node))
	case cfg.AdvanceInterval != 0 && cfg.AdvanceInterval < time.Millisecond:
		return bad("Config.AdvanceInterval must be 0 (1s) or at least 1ms, got %v", cfg.AdvanceInterval)
	case cfg.Retention != 0 && cfg.Retention < time.Second:
		return bad("Config.Retention must be 0 (24h) or at least 1s, got %v", cfg.Retention)
	case cfg.MaxRollouts < 0 || cfg.MaxRollouts > maxMaxRollouts:
		return bad("Config.MaxRollouts must be 0 (1024) to %d, got %d", maxMaxRollouts, cfg.MaxRollouts)
	case cfg.PopulationWindow > 0 && cfg.PopulationWindow < time.Second:
		return bad("Config.PopulationWindow must be 0 (10m), negative (no counting) or at least 1s, got %v", cfg.PopulationWindow)
	case cfg.PopulationFloor < 0 || cfg.PopulationFloor > maxClients:
		return bad("Config.PopulationFloor must be 0 to %d (2^40) clients, got %d", int64(maxClients), cfg.PopulationFloor)
	case cfg.PopulationWarmup < 0:
		return bad("Config.PopulationWarmup must be >= 0, got %v", cfg.PopulationWarmup)
	case !validPer(cfg.CallsPerClient):
		return bad("Config.CallsPerClient must be 0 (1) or finite and > 0, got %v", cfg.CallsPerClient)
	case cfg.MaxEpochJump > MaxEpoch:
		return bad("Config.MaxEpochJump must be at most MaxEpoch (%d), got %d", uint64(MaxEpoch), cfg.MaxEpochJump)
	}
	if err := cfg.Guard.check(); err != nil {
		return settings{}, err
	}
	st := settings{
		clock: sysclock.Or(cfg.Clock), injected: cfg.Clock != nil, node: cfg.Node, log: cfg.Logger,
		cacheTTL: cfg.CacheTTL, every: cfg.AdvanceInterval, retention: cfg.Retention,
		maxRollouts: cfg.MaxRollouts, health: cfg.Health, guard: cfg.Guard.withDefaults(),
		window: cfg.PopulationWindow, popFloor: cfg.PopulationFloor, epochJump: cfg.MaxEpochJump,
		grace: cfg.RestoreGrace, headroom: cfg.Headroom,
	}
	st.perClient, _ = pace.Per(cfg.CallsPerClient)
	if st.node == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		st.node = "node-" + hex.EncodeToString(b[:])
	}
	if st.log == nil {
		st.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case st.cacheTTL == 0:
		st.cacheTTL = defaultCacheTTL
	case st.cacheTTL < 0:
		st.cacheTTL = 0
	}
	if st.every == 0 {
		st.every = defaultAdvanceInterval
	}
	if st.retention == 0 {
		st.retention = defaultRetention
	}
	if st.maxRollouts == 0 {
		st.maxRollouts = defaultMaxRollouts
	}
	switch {
	case st.window == 0:
		st.window = defaultPopulationWindow
	case st.window < 0:
		st.window = 0
	}
	if st.window > 0 {
		st.warmup = cfg.PopulationWarmup
		switch {
		case st.warmup == 0:
			st.warmup = max(defaultPopulationWarmup, 2*st.every)
		case st.warmup < st.every:
			return bad("Config.PopulationWarmup must be 0 (default) or at least Config.AdvanceInterval (%v), got %v: no node could have merged its count of clients by then",
				st.every, st.warmup)
		}
	}
	if st.epochJump == 0 {
		st.epochJump = defaultMaxEpochJump
	}
	switch {
	case st.grace == 0:
		st.grace = 3 * st.every
		if rs, ok := s.(*RedisStore); ok {
			st.grace += rs.breakerOpen()
		}
	case st.grace < 0:
		st.grace = 0
	}
	return st, nil
}

// PushConfig configures NewPusher. The zero value is the default
// configuration: no push budget, eight sessions notified at once.
type PushConfig struct {
	// Budget, if set, is drawn on for each client a pusher notifies: one
	// token under BudgetKey, so that the pushes of every node draw on one
	// fleet-wide budget (a fleet.Strict or fleet.Leased shared by the
	// fleet). If Budget is nil, the release pace alone bounds pushes.
	Budget limiter.Budget
	// BudgetKey is the key the tokens are taken under. If BudgetKey is "",
	// "push". It must be empty when Budget is nil.
	BudgetKey string
	// Concurrency bounds how many sessions a Push notifies at once. If
	// Concurrency is 0, 8; otherwise 1 to 4096. At 1, Push starts no
	// goroutine (see Pusher.Push).
	Concurrency int
}

// Defaults and bounds of PushConfig's fields.
const (
	defaultBudgetKey   = "push"
	defaultConcurrency = 8
	maxConcurrency     = 4096
)

// resolve validates p and fills in its defaults.
func (p PushConfig) resolve() (PushConfig, error) {
	bad := func(format string, args ...any) (PushConfig, error) {
		return p, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case p.Budget == nil && p.BudgetKey != "":
		return bad("PushConfig.BudgetKey is %q but PushConfig.Budget is nil", p.BudgetKey)
	case p.Concurrency < 0 || p.Concurrency > maxConcurrency:
		return bad("PushConfig.Concurrency must be 0 (8) to %d, got %d", maxConcurrency, p.Concurrency)
	}
	if p.Budget != nil && p.BudgetKey == "" {
		p.BudgetKey = defaultBudgetKey
	}
	if p.Concurrency == 0 {
		p.Concurrency = defaultConcurrency
	}
	return p, nil
}

// check validates g, naming its fields as Config.Guard.Field.
func (g Guard) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case g.MinDuration != 0 && g.MinDuration < time.Second:
		return bad("Config.Guard.MinDuration must be 0 (10m) or at least 1s, got %v", g.MinDuration)
	case math.IsNaN(g.MaxRate) || math.IsInf(g.MaxRate, 0) || g.MaxRate < 0 || (g.MaxRate > 0 && g.MaxRate < minRate):
		return bad("Config.Guard.MaxRate must be 0 (no cap) or at least %g, got %v", minRate, g.MaxRate)
	case g.MinCohorts < 0 || g.MinCohorts > maxCohorts:
		return bad("Config.Guard.MinCohorts must be 0 (10) to %d, got %d", maxCohorts, g.MinCohorts)
	case math.IsNaN(g.Share) || g.Share < 0 || g.Share > 1:
		return bad("Config.Guard.Share must be in [0, 1] (0: 0.5), got %v", g.Share)
	}
	return nil
}

// validPer reports whether a calls-per-unit field is 0 or finite and > 0.
func validPer(v float64) bool {
	_, ok := pace.Per(v)
	return ok
}
