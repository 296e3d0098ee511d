// Package slowstart lets a cold node (new, restarted, its cache lost) take
// a growing share of traffic and shed the rest with a time to come back,
// and bounds the cold traffic of a whole fleet by a fleet-wide budget.
//
// # The share
//
// A Gate admits a share of requests that grows from Config.MinShare to 1:
//
//	share = max(MinShare, min(1, ramp))
//
// Without Config.Warmth the ramp is Envoy's slow-start timer,
//
//	ramp = (t / Window) ^ (1 / Aggression)
//
// where t is the time since the Gate was built or last Reset: full traffic
// at Window. With Config.Warmth (the node cache's hit rate, or any warmth
// from 0 to 1) the ramp follows warmth as well as time,
//
//	ramp = max((t / MaxWindow) ^ (1 / Aggression), warmth / Target)
//
// so a node whose cache warmed early takes full traffic early, and one
// that stays cold keeps shedding past Window, until MaxWindow: then it
// takes full traffic whatever its warmth (a node never sheds forever).
// The share never falls while a ramp lasts (a dip in warmth does not
// shed clients already let in), and once it reaches 1 the Gate is warm
// and admits everything until Reset.
//
// # Which requests
//
// A request with a client key is admitted when the key's place,
// hash(Salt, key) as a fraction of [0, 1) (the hash of limiter.Cohort), is
// below the share: a client admitted once stays admitted as the share
// grows, instead of flapping between admitted and shed. A request without
// a key takes the next place of a golden-ratio sequence, which admits the
// share's fraction of any run of key-less requests.
//
// # The whole fleet cold
//
// Envoy's timer admits its share of traffic on every cold endpoint, so
// when every node is new the fleet sends the origin the sum of them. With
// Config.Budget (a fleet-wide limiter.Budget: fleet.Strict or
// fleet.Leased), each request a cold Gate (share below 1) would admit
// first takes one token from Config.BudgetKey, without waiting; with none
// left it is shed with the budget's RetryAfter. However many nodes are
// cold together, they admit at most the budget's rate of cold traffic.
package slowstart

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/cohorthash"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// Defaults of Config's zero fields.
const (
	DefaultWindow        = time.Minute
	DefaultMinShare      = 0.1
	DefaultMinRetryAfter = 100 * time.Millisecond
	DefaultMaxRetryAfter = 5 * time.Second
	DefaultSalt          = "herdcap-slowstart"
)

// Config configures New. The zero value is Envoy's slow start over one
// minute: a share from 10% to 100%, linear in time, without warmth or
// budget.
type Config struct {
	// Window is the time the timer takes from MinShare to full traffic.
	// If Window is 0, DefaultWindow (1 min); it must not be negative.
	Window time.Duration
	// Aggression shapes the timer: (t / Window) ^ (1 / Aggression); 1 is
	// linear, above 1 ramps faster early. If Aggression is 0, 1; it must
	// be positive and finite.
	Aggression float64
	// MinShare is the share a cold node admits from the start. If MinShare
	// is 0, DefaultMinShare (0.1); it must be in (0, 1].
	MinShare float64
	// Warmth, if set, returns the node's warmth from 0 (cold) to 1, such
	// as its cache's hit rate; the share then follows max(timer over
	// MaxWindow, warmth / Target). It is called on every decision of a
	// ramping Gate, concurrently, with no lock held, so it must be cheap
	// (an atomic load). A NaN is read as 0, a value past Target as
	// Target; a panic is recovered, read as 0 and counted
	// (Stats.WarmthFailures).
	Warmth func() float64
	// Target is the warmth at which the node takes full traffic. If
	// Target is 0, 1; it must be in (0, 1]. It must be 0 without Warmth.
	Target float64
	// MaxWindow is, with Warmth, the time after which the node takes
	// full traffic however cold it is. If MaxWindow is 0, 4 × Window; it
	// must be at least Window, and 0 without Warmth.
	MaxWindow time.Duration
	// Budget, if set, bounds the cold traffic of the fleet: each request
	// a ramping Gate would admit takes one token of BudgetKey first (no
	// wait), and is shed without one. Use a fleet-wide budget shared by
	// every node's Gate. A budget error sheds the request too, told the
	// decision's RetryAfter (else MaxRetryAfter).
	Budget limiter.Budget
	// BudgetKey is the budget's key. If BudgetKey is "", "slowstart". It
	// must be "" without Budget.
	BudgetKey string
	// MinRetryAfter and MaxRetryAfter bound the wait told to requests the
	// share sheds. If 0, DefaultMinRetryAfter (100 ms) and
	// DefaultMaxRetryAfter (5 s); Min must be positive and at most Max.
	// A budget's refusal is told the budget's RetryAfter, at least
	// MinRetryAfter.
	MinRetryAfter, MaxRetryAfter time.Duration
	// Salt places clients (see limiter.Cohort). If Salt is "",
	// DefaultSalt. Nodes with the same Salt admit the same clients first;
	// give each node its own (its name) to spread a client's retries.
	Salt string
	// Clock is the source of time; nil: the system clock.
	Clock limiter.Clock
	// Name names the gate in Observe's events. If Name is "",
	// "slowstart".
	Name string
	// Observe receives each decision (observe.SlowStart), after it is
	// made. Nil: none.
	Observe *observe.Hooks
}

// Reason says why a Decision admitted or shed.
type Reason uint8

const (
	// Warm: the Gate is warm (its share reached 1) and admits everything.
	Warm Reason = iota
	// Ramp: admitted by the share, and by the budget if any.
	Ramp
	// Share: shed, its place is above the share.
	Share
	// Budget: shed, the fleet budget had no token (or failed).
	Budget
)

// String returns "warm", "ramp", "share" or "budget".
func (r Reason) String() string {
	switch r {
	case Warm:
		return "warm"
	case Ramp:
		return "ramp"
	case Share:
		return "share"
	case Budget:
		return "budget"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Decision is a Gate's answer to one request. It is returned by value, so
// a decision allocates nothing.
type Decision struct {
	// Admitted reports whether the request may be served.
	Admitted bool
	// Reason says why.
	Reason Reason
	// RetryAfter is, for a shed request, when to come back: for Share,
	// when the request's place will be admitted at the ramp's current
	// pace, spread, within [MinRetryAfter, MaxRetryAfter]; for Budget,
	// the budget's RetryAfter, at least MinRetryAfter.
	RetryAfter time.Duration
	// Share is the share in force, from MinShare to 1.
	Share float64
}

// Stats are a Gate's counts since New (a Reset does not clear them) and
// its current share.
type Stats struct {
	Share          float64   // the share in force (1: warm)
	Started        time.Time // the start of the current ramp
	Admitted       uint64    // requests admitted
	ShedShare      uint64    // requests shed by the share
	ShedBudget     uint64    // requests shed by the budget (BudgetErrors included)
	BudgetErrors   uint64    // budget errors
	WarmthFailures uint64    // panics of Config.Warmth
	Resets         uint64    // calls to Reset
}

// ramp is the state of one ramp; Reset replaces it, so a decision under
// way when it does only updates the old one.
type ramp struct {
	start int64         // unix ns
	share atomic.Uint64 // float64 bits: the highest share reached
	warm  atomic.Bool
}

// Gate admits a growing share of a cold node's requests (see the package
// doc for the formula). Its zero value is not usable: build one with New.
//
// A Gate starts no goroutine: each decision reads the clock and, while the
// node ramps, Config.Warmth, and works the share out then. Decisions
// allocate nothing but what Config.Budget allocates. A Gate is safe for
// concurrent use.
type Gate struct {
	window, maxWindow time.Duration
	invAggr           float64
	minShare, target  float64
	warmth            func() float64
	budget            limiter.Budget
	budgetKey         string
	minRA, maxRA      time.Duration
	salt              string
	name              string
	onDecide          func(observe.SlowStart) // Observe.SlowStart; nil: none
	clock             limiter.Clock

	cur    atomic.Pointer[ramp]
	seq    atomic.Uint64 // key-less places
	spread atomic.Uint64 // golden-ratio spread of the waits
	admitted, shedShare, shedBudget, budgetErrs,
	warmthFails, resets atomic.Uint64
}

// New returns a Gate whose ramp starts now; an error wraps
// limiter.ErrInvalidConfig and names the bad field.
func New(cfg Config) (*Gate, error) {
	bad := func(format string, args ...any) (*Gate, error) {
		return nil, fmt.Errorf("%w: slowstart.Config."+format, append([]any{limiter.ErrInvalidConfig}, args...)...)
	}
	g := &Gate{window: cfg.Window, minShare: cfg.MinShare, target: cfg.Target, maxWindow: cfg.MaxWindow,
		warmth: cfg.Warmth, budget: cfg.Budget, budgetKey: cfg.BudgetKey,
		minRA: cfg.MinRetryAfter, maxRA: cfg.MaxRetryAfter, salt: cfg.Salt, clock: cfg.Clock, name: cfg.Name}
	if g.name == "" {
		g.name = "slowstart"
	}
	if cfg.Observe != nil {
		g.onDecide = cfg.Observe.SlowStart
	}
	aggr := cfg.Aggression
	switch {
	case cfg.Window < 0:
		return bad("Window must be >= 0, got %v", cfg.Window)
	case aggr < 0 || math.IsNaN(aggr) || math.IsInf(aggr, 0):
		return bad("Aggression must be positive and finite, got %v", aggr)
	case cfg.MinShare < 0 || cfg.MinShare > 1 || math.IsNaN(cfg.MinShare):
		return bad("MinShare must be in (0, 1], got %v", cfg.MinShare)
	case cfg.Target < 0 || cfg.Target > 1 || math.IsNaN(cfg.Target):
		return bad("Target must be in (0, 1], got %v", cfg.Target)
	case cfg.Warmth == nil && cfg.Target != 0:
		return bad("Target applies only with Config.Warmth")
	case cfg.Warmth == nil && cfg.MaxWindow != 0:
		return bad("MaxWindow applies only with Config.Warmth")
	case cfg.Budget == nil && cfg.BudgetKey != "":
		return bad("BudgetKey applies only with Config.Budget")
	case cfg.MinRetryAfter < 0:
		return bad("MinRetryAfter must be >= 0, got %v", cfg.MinRetryAfter)
	case cfg.MaxRetryAfter < 0:
		return bad("MaxRetryAfter must be >= 0, got %v", cfg.MaxRetryAfter)
	}
	if g.window == 0 {
		g.window = DefaultWindow
	}
	if aggr == 0 {
		aggr = 1
	}
	g.invAggr = 1 / aggr
	if g.minShare == 0 {
		g.minShare = DefaultMinShare
	}
	if g.target == 0 {
		g.target = 1
	}
	if g.warmth != nil {
		if g.maxWindow == 0 {
			g.maxWindow = 4 * g.window
		}
		if g.maxWindow < g.window {
			return bad("MaxWindow (%v) must be >= Window (%v)", g.maxWindow, g.window)
		}
	} else {
		g.maxWindow = g.window
	}
	if g.budget != nil && g.budgetKey == "" {
		g.budgetKey = "slowstart"
	}
	if g.minRA == 0 {
		g.minRA = DefaultMinRetryAfter
	}
	if g.maxRA == 0 {
		g.maxRA = DefaultMaxRetryAfter
	}
	if g.minRA > g.maxRA {
		return bad("MinRetryAfter (%v) must be <= MaxRetryAfter (%v)", g.minRA, g.maxRA)
	}
	if g.salt == "" {
		g.salt = DefaultSalt
	}
	g.cur.Store(&ramp{start: g.now()})
	return g, nil
}

func (g *Gate) now() int64 {
	if g.clock == nil {
		return time.Now().UnixNano()
	}
	return g.clock.Now().UnixNano()
}

// Reset starts a new ramp from MinShare now: the node lost its cache or
// restarted. Decisions under way finish on the old ramp.
func (g *Gate) Reset() {
	g.resets.Add(1)
	g.cur.Store(&ramp{start: g.now()})
}

// Share returns the share in force now, from MinShare to 1.
func (g *Gate) Share() float64 {
	s, _ := g.share(g.cur.Load(), g.now())
	return s
}

// Stats returns the Gate's counts and its share now.
func (g *Gate) Stats() Stats {
	r := g.cur.Load()
	s, _ := g.share(r, g.now())
	return Stats{Share: s, Started: time.Unix(0, r.start), Admitted: g.admitted.Load(),
		ShedShare: g.shedShare.Load(), ShedBudget: g.shedBudget.Load(), BudgetErrors: g.budgetErrs.Load(),
		WarmthFailures: g.warmthFails.Load(), Resets: g.resets.Load()}
}

// timer returns (elapsed / over) ^ (1 / Aggression).
func (g *Gate) timer(elapsed, over time.Duration) float64 {
	x := float64(elapsed) / float64(over)
	if g.invAggr == 1 {
		return x
	}
	return math.Pow(x, g.invAggr)
}

// share works out r's share at now and reports the time elapsed on it.
func (g *Gate) share(r *ramp, now int64) (float64, time.Duration) {
	elapsed := time.Duration(max(now-r.start, 0))
	if r.warm.Load() {
		return 1, elapsed
	}
	v := 1.0
	if elapsed < g.maxWindow {
		v = g.timer(elapsed, g.maxWindow)
		if g.warmth != nil {
			v = max(v, g.readWarmth()/g.target)
		}
		v = max(g.minShare, min(1, v))
	}
	for { // the share never falls during a ramp
		old := r.share.Load()
		if of := math.Float64frombits(old); of >= v {
			v = of
			break
		}
		if r.share.CompareAndSwap(old, math.Float64bits(v)) {
			break
		}
	}
	if v >= 1 {
		r.warm.Store(true)
	}
	return v, elapsed
}

// readWarmth calls Config.Warmth under recover; NaN and panics read 0.
func (g *Gate) readWarmth() (w float64) {
	defer func() {
		if recover() != nil {
			g.warmthFails.Add(1)
			w = 0
		}
	}()
	w = g.warmth()
	if math.IsNaN(w) {
		return 0
	}
	return w
}

// golden returns the fractional part of n × (√5 − 1) ÷ 2, in [0, 1): the
// n-th place of a sequence that spreads any run of n evenly.
func golden(n uint64) float64 {
	return float64(n*0x9E3779B97F4A7C15>>11) / (1 << 53)
}

// place returns key's place in [0, 1); "" takes the next key-less place.
func (g *Gate) place(key string) float64 {
	if key == "" {
		return golden(g.seq.Add(1))
	}
	return float64(cohorthash.Sum(g.salt, key)>>11) / (1 << 53)
}

// Admit decides one request of the client key ("" for a request without
// one). ctx bounds only the budget's call. An error is the budget's (the
// request is then shed, Reason Budget); the Decision is valid either way.
func (g *Gate) Admit(ctx context.Context, key string) (Decision, error) {
	d, err := g.admit(ctx, key)
	if g.onDecide != nil {
		g.onDecide(observe.SlowStart{Policy: g.name, Admitted: d.Admitted, Reason: d.Reason.String(),
			Share: d.Share, RetryAfter: d.RetryAfter})
	}
	return d, err
}

// admit is Admit's decision.
func (g *Gate) admit(ctx context.Context, key string) (Decision, error) {
	r := g.cur.Load()
	s, elapsed := g.share(r, g.now())
	if s >= 1 {
		g.admitted.Add(1)
		return Decision{Admitted: true, Reason: Warm, Share: 1}, nil
	}
	x := g.place(key)
	if x >= s {
		g.shedShare.Add(1)
		return Decision{Reason: Share, RetryAfter: g.wait(x, s, elapsed), Share: s}, nil
	}
	if g.budget != nil {
		d, err := g.budget.Take(ctx, limiter.Request{Key: g.budgetKey, N: 1})
		if err != nil || !d.Allowed {
			g.shedBudget.Add(1)
			ra := d.RetryAfter
			if err != nil {
				g.budgetErrs.Add(1)
				if ra <= 0 {
					ra = g.maxRA
				}
				err = fmt.Errorf("slowstart: budget: %w", err)
			}
			return Decision{Reason: Budget, RetryAfter: max(ra, g.minRA), Share: s}, err
		}
	}
	g.admitted.Add(1)
	return Decision{Admitted: true, Reason: Ramp, Share: s}, nil
}

// wait estimates when place x will be admitted, the share being s after
// elapsed: the sooner of the timer's time to reach x and the time the
// share takes at its mean pace so far above MinShare (which warmth may
// have quickened), spread upwards by a quarter by a golden-ratio sequence
// so that requests shed together do not come back together, within
// [MinRetryAfter, MaxRetryAfter].
func (g *Gate) wait(x, s float64, elapsed time.Duration) time.Duration {
	// the timer reaches x at maxWindow × x^Aggression
	w := float64(g.maxWindow)*math.Pow(x, 1/g.invAggr) - float64(elapsed)
	if grown := s - g.minShare; grown > 0 && elapsed > 0 {
		w = min(w, (x-s)*float64(elapsed)/grown)
	}
	f := golden(g.spread.Add(1))
	w *= 1 + f/4
	if w >= float64(g.maxRA) {
		w = float64(g.maxRA) * (0.75 + f/4)
	}
	return max(time.Duration(w), g.minRA)
}
