package invalidate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// Defaults of the options below.
const (
	// DefaultCacheTTL is how long a node answers Due from the released-wave
	// state it last read before reading it again.
	DefaultCacheTTL = time.Second
	// DefaultAdvanceInterval is how often Run advances the rollouts.
	DefaultAdvanceInterval = time.Second
	// DefaultRetention is how long a finished rollout stays in the store,
	// so that clients that were away still get its notice.
	DefaultRetention = 24 * time.Hour
	// DefaultMaxRollouts is the most rollouts a namespace holds, finished
	// ones included.
	DefaultMaxRollouts = 1024
	// DefaultPopulationWindow is the window of the distinct-clients
	// estimate: clients seen in the current and the previous window count.
	DefaultPopulationWindow = 10 * time.Minute
	// DefaultTimeout is the time budget of one Redis call.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultConcurrency is how many sessions a Pusher notifies at once.
	DefaultConcurrency = 8
	// DefaultWarmup is the least warm-up of a rollout whose population is
	// unknown (see WithWarmup); the default is this or two advance
	// intervals, whichever is longer.
	DefaultWarmup = 30 * time.Second
	// DefaultMaxEpochJump is how far above the store's clock (in epochs,
	// which the store assigns in milliseconds) an explicit Rollout.Epoch may
	// lie: one day of the sequence. See WithMaxEpochJump.
	DefaultMaxEpochJump uint64 = 24 * 60 * 60 * 1000
)

// Option configures NewCoordinator, NewRedisStore or NewPusher. An option
// given to a constructor it does not apply to is rejected with
// ErrInvalidOption.
type Option struct {
	name  string
	scope target
	apply func(*config) error
}

type target uint8

const (
	forCoordinator target = 1 << iota
	forRedisStore
	forPusher
)

func (t target) String() string {
	switch t {
	case forCoordinator:
		return "NewCoordinator"
	case forRedisStore:
		return "NewRedisStore"
	case forPusher:
		return "NewPusher"
	}
	return "constructor"
}

type config struct {
	clock       limiter.Clock
	clockSet    bool
	node        string
	logger      *slog.Logger
	cacheTTL    time.Duration
	every       time.Duration
	health      Health
	guard       Guard
	retention   time.Duration
	maxRollouts int
	window      time.Duration
	warmup      time.Duration // 0: the default
	popFloor    int
	epochJump   uint64
	grace       time.Duration
	graceSet    bool

	namespace  string
	prefix     string
	timeout    time.Duration
	brFailures int
	brOpen     time.Duration

	pushBudget  limiter.Budget
	pushKey     string
	concurrency int
}

func buildConfig(t target, opts []Option) (config, error) {
	c := config{
		clock:       systemClock{},
		logger:      slog.New(slog.DiscardHandler),
		cacheTTL:    DefaultCacheTTL,
		every:       DefaultAdvanceInterval,
		retention:   DefaultRetention,
		maxRollouts: DefaultMaxRollouts,
		window:      DefaultPopulationWindow,
		epochJump:   DefaultMaxEpochJump,
		namespace:   "default",
		prefix:      "herdcap",
		timeout:     DefaultTimeout,
		brFailures:  defaultBreakerFailures,
		brOpen:      defaultBreakerOpen,
		concurrency: DefaultConcurrency,
	}
	for _, o := range opts {
		if o.apply == nil {
			return c, fmt.Errorf("%w: zero Option value", ErrInvalidOption)
		}
		if o.scope&t == 0 {
			return c, fmt.Errorf("%w: %s does not apply to %v", ErrInvalidOption, o.name, t)
		}
		if err := o.apply(&c); err != nil {
			return c, fmt.Errorf("%w: %s: %w", ErrInvalidOption, o.name, err)
		}
	}
	return c, nil
}

// WithClock makes the coordinator take its time from c instead of the
// system clock: for the stores' times, the Due cache and Run. If c also has
// a method After(d time.Duration) <-chan time.Time (a virtual clock), Run
// waits on it, so a test or the storm simulator drives Run in virtual time.
// With the Redis store, an injected clock's time is passed to the scripts,
// which then ignore Redis TIME.
func WithClock(c limiter.Clock) Option {
	return Option{name: "WithClock", scope: forCoordinator, apply: func(o *config) error {
		if c == nil {
			return fmt.Errorf("clock is nil")
		}
		o.clock, o.clockSet = c, true
		return nil
	}}
}

// WithNode names this node (1 to MaxSourceLen bytes): the source logged for
// Pause, Resume and Abort called on this coordinator. Default: a random ID.
func WithNode(name string) Option {
	return Option{name: "WithNode", scope: forCoordinator, apply: func(o *config) error {
		if name == "" || len(name) > MaxSourceLen {
			return fmt.Errorf("node name must be 1 to %d bytes, got %d", MaxSourceLen, len(name))
		}
		o.node = name
		return nil
	}}
}

// WithLogger sets the logger: starts, pauses, resumes, aborts and refusals
// (coordinator), breaker transitions (Redis store), notify failures
// (pusher). By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return Option{name: "WithLogger", scope: forCoordinator | forRedisStore | forPusher, apply: func(o *config) error {
		if l == nil {
			return fmt.Errorf("logger is nil")
		}
		o.logger = l
		return nil
	}}
}

// WithCacheTTL sets how long Due answers from the state it last read
// (default DefaultCacheTTL): within it, Due makes no store call. Zero
// reads the store on every Due. A release, pause or abort reaches this
// node's answers within the TTL, or at its next advance if sooner.
func WithCacheTTL(d time.Duration) Option {
	return Option{name: "WithCacheTTL", scope: forCoordinator, apply: func(o *config) error {
		if d < 0 {
			return fmt.Errorf("TTL must be >= 0, got %v", d)
		}
		o.cacheTTL = d
		return nil
	}}
}

// WithAdvanceInterval sets how often Run advances (default
// DefaultAdvanceInterval). It also sizes the wave: one advance releases at
// most one cohort plus Rate × interval clients; and it is the length of a
// health hold.
func WithAdvanceInterval(d time.Duration) Option {
	return Option{name: "WithAdvanceInterval", scope: forCoordinator, apply: func(o *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("interval must be >= 1ms, got %v", d)
		}
		o.every = d
		return nil
	}}
}

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

// WithHealth sets the health input of advances. Default: always healthy.
func WithHealth(h Health) Option {
	return Option{name: "WithHealth", scope: forCoordinator, apply: func(o *config) error {
		if h == nil {
			return fmt.Errorf("health is nil")
		}
		o.health = h
		return nil
	}}
}

// WithRetention sets how long a finished rollout stays in the store
// (default DefaultRetention), so that clients that were away still get its
// notice. A client that was away longer must treat its cache as stale on
// its own.
func WithRetention(d time.Duration) Option {
	return Option{name: "WithRetention", scope: forCoordinator, apply: func(o *config) error {
		if d < time.Second {
			return fmt.Errorf("retention must be >= 1s, got %v", d)
		}
		o.retention = d
		return nil
	}}
}

// WithMaxRollouts bounds the rollouts a namespace holds, finished ones
// included (default DefaultMaxRollouts); Start beyond it fails with
// ErrTooManyRollouts. It bounds the work of every advance and snapshot.
func WithMaxRollouts(n int) Option {
	return Option{name: "WithMaxRollouts", scope: forCoordinator, apply: func(o *config) error {
		if n < 1 || n > 1<<16 {
			return fmt.Errorf("max rollouts must be 1 to %d, got %d", 1<<16, n)
		}
		o.maxRollouts = n
		return nil
	}}
}

// WithPopulationWindow sets the window of the fleet-wide distinct-clients
// estimate (default DefaultPopulationWindow): the clients whose Due calls
// any node saw in the current or previous window. Zero turns counting off;
// the pace then uses Rollout.Clients alone.
func WithPopulationWindow(d time.Duration) Option {
	return Option{name: "WithPopulationWindow", scope: forCoordinator, apply: func(o *config) error {
		if d != 0 && d < time.Second {
			return fmt.Errorf("window must be 0 (off) or >= 1s, got %v", d)
		}
		o.window = d
		return nil
	}}
}

// WithPopulationFloor sets the least population the pace of any rollout
// assumes, in clients (0 to MaxClients; default 0): the pace is computed
// from the largest of Rollout.Clients, the store's estimate and this floor.
// It is the bound on what is known about a fleet whose size the callers do
// not give: a coordinator that does not estimate the population
// (WithPopulationWindow(0)) refuses rollouts with Rollout.Clients 0 unless
// a floor is set.
func WithPopulationFloor(n int) Option {
	return Option{name: "WithPopulationFloor", scope: forCoordinator, apply: func(o *config) error {
		if n < 0 || n > MaxClients {
			return fmt.Errorf("population floor must be 0 to %d clients, got %d", int64(MaxClients), n)
		}
		o.popFloor = n
		return nil
	}}
}

// WithWarmup sets how long a rollout whose population is unknown
// (Rollout.Clients 0) waits before releasing its first cohort, so that the
// fleet's estimate of distinct clients (see WithPopulationWindow) has seen
// the clients polling meanwhile: the pace is then computed from a warm
// estimate, not from the handful of clients seen before the start. Choose
// at least the clients' poll interval plus one advance interval: a client
// is counted when it polls, and its node merges what it counted at its
// next advance. It must be at least the advance interval (NewCoordinator
// checks). Default: DefaultWarmup or two advance intervals, whichever is
// longer. With counting off, there is nothing to wait for and no warm-up.
func WithWarmup(d time.Duration) Option {
	return Option{name: "WithWarmup", scope: forCoordinator, apply: func(o *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("warm-up must be >= 1ms, got %v", d)
		}
		o.warmup = d
		return nil
	}}
}

// WithMaxEpochJump bounds an explicit Rollout.Epoch (default
// DefaultMaxEpochJump, at most MaxEpoch): it may be at most n above the
// store's clock in milliseconds (the sequence the store assigns epochs
// from) or, when the namespace is already past that, only the next epoch.
// An epoch further ahead is refused with ErrEpochTooFar, so that no single
// start can exhaust the epoch space and make every later start of the
// namespace fail (epochs only rise). The bound follows the clock, not the
// namespace's highest epoch, so repeated starts cannot ratchet it up.
func WithMaxEpochJump(n uint64) Option {
	return Option{name: "WithMaxEpochJump", scope: forCoordinator, apply: func(o *config) error {
		if n < 1 || n > MaxEpoch {
			return fmt.Errorf("epoch jump must be 1 to %d, got %d", uint64(MaxEpoch), n)
		}
		o.epochJump = n
		return nil
	}}
}

// WithRestoreGrace sets how long a rollout re-registered after the store
// lost its data releases nothing (default: three advance intervals, plus
// the Redis store's breaker open period). Every node that knew the rollout
// re-registers it at its first advance after noticing the loss, and the
// store keeps the most final state any of them knew; the grace gives the
// node that aborted it time to do so before a node with an older
// view, which still saw it running, can release another cohort. Choose at
// least the longest advance interval in the fleet plus the breaker's open
// period. Zero turns the grace off.
func WithRestoreGrace(d time.Duration) Option {
	return Option{name: "WithRestoreGrace", scope: forCoordinator, apply: func(o *config) error {
		if d < 0 {
			return fmt.Errorf("grace must be >= 0, got %v", d)
		}
		o.grace, o.graceSet = d, true
		return nil
	}}
}

// WithNamespace names the set of rollouts (default "default"): nodes that
// coordinate must use the same one, and every key of a namespace shares one
// Redis Cluster hash slot.
func WithNamespace(ns string) Option {
	return Option{name: "WithNamespace", scope: forRedisStore, apply: func(o *config) error {
		if err := checkName(ns); err != nil {
			return fmt.Errorf("namespace %w", err)
		}
		o.namespace = ns
		return nil
	}}
}

// WithPrefix sets the first component of every Redis key (default
// "herdcap").
func WithPrefix(p string) Option {
	return Option{name: "WithPrefix", scope: forRedisStore, apply: func(o *config) error {
		if err := checkName(p); err != nil {
			return fmt.Errorf("prefix %w", err)
		}
		o.prefix = p
		return nil
	}}
}

// WithTimeout sets the time budget of one Redis call (default
// DefaultTimeout). A call that takes longer is abandoned and counted as a
// failure by the breaker.
func WithTimeout(d time.Duration) Option {
	return Option{name: "WithTimeout", scope: forRedisStore, apply: func(o *config) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be > 0, got %v", d)
		}
		o.timeout = d
		return nil
	}}
}

// WithBreaker tunes the circuit breaker around Redis: it opens after
// failures consecutive failed calls and stays open for openFor (making no
// Redis call) before letting one probe through. Defaults 3 failures and
// 1 s, as fleet.Redis.
func WithBreaker(failures int, openFor time.Duration) Option {
	return Option{name: "WithBreaker", scope: forRedisStore, apply: func(o *config) error {
		if failures < 1 {
			return fmt.Errorf("failures must be >= 1, got %d", failures)
		}
		if openFor <= 0 {
			return fmt.Errorf("openFor must be > 0, got %v", openFor)
		}
		o.brFailures, o.brOpen = failures, openFor
		return nil
	}}
}

// WithPushBudget makes the pusher take one token from b under key for each
// client it notifies, so that the push of every node draws on one
// fleet-wide budget (a fleet.Strict or fleet.Leased shared by the fleet).
// Default: none; the release pace alone bounds pushes.
func WithPushBudget(b limiter.Budget, key string) Option {
	return Option{name: "WithPushBudget", scope: forPusher, apply: func(o *config) error {
		if b == nil {
			return fmt.Errorf("budget is nil")
		}
		if key == "" {
			return fmt.Errorf("key is empty")
		}
		o.pushBudget, o.pushKey = b, key
		return nil
	}}
}

// WithConcurrency bounds how many sessions a pusher notifies at once
// (default DefaultConcurrency).
func WithConcurrency(n int) Option {
	return Option{name: "WithConcurrency", scope: forPusher, apply: func(o *config) error {
		if n < 1 || n > 4096 {
			return fmt.Errorf("concurrency must be 1 to 4096, got %d", n)
		}
		o.concurrency = n
		return nil
	}}
}

func checkName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 bytes, got %d", len(s))
	}
	for _, r := range s {
		if r == '{' || r == '}' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("must not contain braces, colons, spaces or control characters, got %q", s)
		}
	}
	return nil
}

// Defaults of the Redis store's breaker: those of fleet.Redis.
const (
	defaultBreakerFailures = 3
	defaultBreakerOpen     = time.Second
)

// systemClock is the clock of a coordinator without WithClock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	return time.AfterFunc(d, f)
}
