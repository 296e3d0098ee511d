package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/headroom"
	originguard "github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/limiter/retry"
)

// budget is what the simulator needs of a limiter backend: *limiter.Local
// on the memory store, *fleet.Strict on Redis, both on the virtual clock.
type budget interface {
	limiter.Budget
	SetLimit(l limiter.Limit) error
	Close() error
}

// store is where a run's coordination lives: in process, or on Redis with
// the virtual time passed to every script. Each run gets its own key
// prefix on Redis, so runs never share state.
type store struct {
	clock   *vclock
	redis   redis.UniversalClient // nil: memory
	prefix  string
	ops     *atomic.Int64 // Redis commands sent; nil on memory
	hook    redisHook     // counts and fails the commands; zero on memory
	failure fleet.FailurePolicy
}

// redisTimeout is the timeout of one Redis call in a simulation: long,
// because a call answered by the failure policy instead of Redis would make
// the run depend on the machine's load. The failure policy answers only
// the calls a scenario's outage fails (redisHook); a Redis that really
// cannot answer stops the run with an error.
const redisTimeout = 10 * time.Second

// budget returns a budget of l on the virtual clock whose limit changes
// ramp over ramp (0: at once).
func (st *store) budget(name string, l limiter.Limit, ramp time.Duration) (budget, error) {
	cfg := limiter.Config{Clock: st.clock.lend(), Ramp: ramp}
	if ramp == 0 {
		cfg.Ramp = limiter.NoRamp
	}
	if st.redis == nil {
		return limiter.NewLocal(l, cfg)
	}
	return fleet.NewStrict(st.redisConfig(name), l, fleet.Config{Config: cfg, Failure: st.failure})
}

// redisConfig is the Redis of a component named name ("": its default).
// The breaker never opens (BreakerFailures is out of reach): gobreaker
// times its open period on the real clock, which would make a run with
// outages depend on the machine. During an outage every call reaches the
// hook, which fails it at once, and the failure policy answers each, as it
// answers while the breaker is open.
func (st *store) redisConfig(name string) fleet.Redis {
	return fleet.Redis{Client: st.redis, Prefix: st.prefix, Name: name, Timeout: redisTimeout,
		BreakerFailures: 1 << 20, BreakerOpen: time.Second}
}

func (st *store) admission(l limiter.Limit, horizon time.Duration, maxKeys int, room limiter.Headroom) (*admission.Gate, error) {
	cfg := admission.Config{Config: limiter.Config{Clock: st.clock.lend()}, Horizon: horizon, Headroom: room}
	if room != nil {
		cfg.CallsPerSession = 1 // a session is one origin call
	}
	if st.redis == nil {
		cfg.MaxKeys = maxKeys
		return admission.New(l, cfg)
	}
	return admission.NewShared(st.redisConfig(""), l, admission.SharedConfig{Config: cfg, Failure: st.failure})
}

func (st *store) invalidateStore() (invalidate.Store, error) {
	if st.redis == nil {
		return invalidate.NewMemoryStore(), nil
	}
	return invalidate.NewRedisStore(st.redisConfig(""))
}

// refreshLimit is the config change's refresh limit: rate per second, with
// a burst of one tick's worth, so that a tick can take all it earned. The
// dispatch spreads each tick's take evenly over the tick, so the clients it
// lets through arrive at the rate, not in bursts (refreshBurst).
func refreshLimit(rate float64, tick time.Duration) limiter.Limit {
	return limiter.PerSecond(rate, intervalBurst(rate, tick))
}

// pushLimit is the pushers' fleet-wide push budget: rate per second, with a
// burst of one push interval's worth plus one notice. The pushes take whole
// notices, so a bucket of exactly one interval's worth would lose the
// fraction of a token left after each push to its cap: at 7,777 clients
// (15.9 notices per second, 0.8 per 50 ms interval, a burst of 1) the
// pushers delivered 10 per second and the rollout converged 1.35 ×
// schedule. With the one more notice nothing earned is lost. The pushers
// notify at once, so the burst is real: it sets the change's peak window
// (changeWindow), and Validate refuses a push interval whose burst breaks
// the change bound.
func pushLimit(rate float64, interval time.Duration) limiter.Limit {
	return limiter.PerSecond(rate, intervalBurst(rate, interval)+1)
}

// intervalBurst is rate × d rounded up, at least 1; 1e-9 is taken off the
// product first, so that a float a hair above a whole number gains no token
// (0.1 × 3 per second is 0.30000000000000004 in float64: 10 s of it is 3,
// not 4).
func intervalBurst(rate float64, d time.Duration) int {
	return max(1, int(math.Ceil(rate*d.Seconds()-1e-9)))
}

// originLimit is the origin budget: a burst of peakShare (5%) of a
// second's worth, at least one call.
func originLimit(rate float64) limiter.Limit {
	return limiter.PerSecond(rate, max(1, int(math.Floor(rate*peakShare+1e-9))))
}

// admissionLimit is the admission gate's limit: a burst of 4% of a
// second's worth, at least one session. A reconnection completes when its
// session's origin call does, which the origin budget may hold (up to
// originMaxWait), so sessions admitted before a window can complete in it:
// the change window counts one more client for them (changeWindow), and
// the burst leaves room for it within peakShare of a second at scale.
func admissionLimit(rate float64) limiter.Limit {
	return limiter.PerSecond(rate, max(1, int(math.Floor(rate*0.04+1e-9))))
}

// peakShare is the most a budget's burst may be of its allowance over a
// peak window (see peakWindow): 5%.
const peakShare = 0.05

// peakWindow is the peak window of a budget of rate per second and burst
// tokens: the least whole number of seconds W ≥ 1 whose allowance rate × W
// is at least burst ÷ peakShare, capped at maxW (the run's length).
//
// A token bucket lets through at most rate × W + burst in any W seconds,
// so the peak over W seconds is at most (rate·W + burst) ÷ (rate·W) ≤ 1 +
// peakShare = 1.05 × its rate: what the bound of 1.1 × budget needs, with
// room left. At fleet sizes where a second's allowance is large, W is 1
// (the origin budget from 20 calls per second on); at small ones the burst
// is the one-token quantum (a budget of 1/s lets 2 through in some second),
// and W is the span over which that quantum is 5% of the allowance (20 s
// at 1/s), so the measure means the same at every size.
func peakWindow(rate float64, burst, maxW int) int {
	if rate <= 0 || maxW < 1 {
		return 1
	}
	w := math.Ceil(float64(burst)/(peakShare*rate) - 1e-9)
	return int(max(1, min(w, float64(maxW))))
}

// guards are the herdcap components of a protected run's servers: the
// real ones, driven through their injected clocks.
type guards struct {
	origin    budget                             // origin calls, fleet-wide
	guard     *originguard.Guard                 // the nodes' guard in front of the origin, on the origin budget
	holds     []originguard.Hold                 // per client: its origin call's guard decision, until sent
	admission *admission.Gate                    // new sessions, fleet-wide
	admitter  *serverside.Admitter[sessionReq]   // the nodes' admission, as httpmw.Admit and grpcmw.Admit decide it
	coords    []*invalidate.Coordinator          // one per node, on one store
	notifiers []*serverside.Notifier[sessionReq] // one per node, on its coordinator: notices on a request, as the transports tell them
	epochArg  [1]string                          // the epoch field of the request the notifiers decide
	epochs    [2]epochText                       // epochText's cache
	failed    storeError                         // the error a notifier logged, if any
	pushers   []*invalidate.Pusher               // one per node, on its coordinator
	push      budget                             // the pushers' fleet-wide budget
	ops       *atomic.Int64
	st        *store
	restores  atomic.Int64 // rollouts re-registered after the store lost them (restoreCounter)

	rollout invalidate.Rollout
	turn    int // the node whose turn it is to advance
	pushes  pushState

	ctl     *headroom.Controller // the fleet's headroom controller; nil: fixed budgets
	room    *fleetHeadroom       // the headroom the nodes read
	records []parked             // origin calls sent, recorded with the guard at their completion
	free    []uint32             // free slots of records
}

// parked is an origin call's guard decision and outcome, from its sending
// until its caller learns the outcome, when it is recorded (recordAt).
type parked struct {
	h   originguard.Hold
	out originguard.Outcome
	lat time.Duration
}

// park keeps h with its call's outcome and latency until the call
// completes, and returns its slot.
func (g *guards) park(h originguard.Hold, out originguard.Outcome, lat time.Duration) uint32 {
	p := parked{h, out, lat}
	if n := len(g.free); n > 0 {
		k := g.free[n-1]
		g.free = g.free[:n-1]
		g.records[k] = p
		return k
	}
	g.records = append(g.records, p)
	return uint32(len(g.records) - 1)
}

// recordAt records the call parked in slot k with the guard (and so with
// the headroom): at its completion, not when it was sent, so that the
// controller learns a timeout when the caller does, not before.
func (g *guards) recordAt(k uint32) {
	p := g.records[k]
	g.records[k] = parked{}
	g.free = append(g.free, k)
	p.h.RecordOutcome(p.out, p.lat)
}

// fleetHeadroom is the origin's headroom as the simulated nodes read it
// (origin.Headroom for the guard, limiter.Headroom for rollouts and
// admission). On Redis it is the shared controller's Origin. On the memory
// store the limit and spare it gives are the controller's one interval
// late, as a shared controller's are (its interval k is finalised by the
// first report of k+1): the simulated nodes are a fleet, and with the
// same lag both stores give the same numbers. Only the simulator's
// goroutine uses it (the virtual clock's timers run there).
type fleetHeadroom struct {
	o           *headroom.Origin
	lag         bool
	limit, next limiter.Limit
	spare, nsp  float64
	clock       *vclock
	every       time.Duration
	timer       limiter.Timer
}

func newFleetHeadroom(o *headroom.Origin, lag bool, clock *vclock, every time.Duration) *fleetHeadroom {
	h := &fleetHeadroom{o: o, lag: lag, clock: clock, every: every}
	if lag {
		h.limit, h.spare = o.Limit(), o.Spare()
		h.next, h.nsp = h.limit, h.spare
		// Set after the controller's loop, this timer fires after its
		// tick at every interval's end (the virtual clock fires timers
		// due at one time in the order they were set).
		h.timer = clock.AfterFunc(every, h.shift)
	}
	return h
}

// shift moves the lagged figures one interval on.
func (h *fleetHeadroom) shift() {
	h.limit, h.spare = h.next, h.nsp
	h.next, h.nsp = h.o.Limit(), h.o.Spare()
	h.timer = h.clock.AfterFunc(h.every, h.shift)
}

// Limit is the origin's limit as the nodes apply it.
func (h *fleetHeadroom) Limit() limiter.Limit {
	if h.lag {
		return h.limit
	}
	return h.o.Limit()
}

// Spare is the origin's spare capacity as the nodes see it.
func (h *fleetHeadroom) Spare() float64 {
	if h.lag {
		return h.spare
	}
	return h.o.Spare()
}

// Record reports a call to the controller.
func (h *fleetHeadroom) Record(lane originguard.Lane, latency time.Duration, o originguard.Outcome) {
	h.o.Record(lane, latency, o)
}

func (h *fleetHeadroom) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
}

// headroomController returns the fleet's headroom controller for the
// scenario's protection.headroom: in memory, or shared through Redis, on
// the virtual clock.
func (st *store) headroomController(hs *HeadroomSpec) (*headroom.Controller, error) {
	cfg := headroom.Config{
		Origins: map[string]headroom.Bounds{"origin": {Floor: hs.Floor, Ceiling: hs.Ceiling, Initial: hs.Initial, Burst: headroomBurst,
			Tolerance: hs.Tolerance}},
		Interval: hs.Interval.D(),
		Clock:    st.clock.lend(),
	}
	if st.redis == nil {
		return headroom.New(cfg)
	}
	return headroom.NewShared(st.redisConfig("headroom"), headroom.SharedConfig{Config: cfg, Failure: st.failure})
}

// headroomBurst is the adaptive limit's burst as time at the limit: 5% of
// a second (peakShare), as the fixed origin budget's.
const headroomBurst = 50 * time.Millisecond

// clientSide is what herdcap gives a client (PolicyJitter, PolicySlot):
// the client core's retry decision over the real backoff, and a retry
// budget per client.
type clientSide struct {
	retrier clientcore.Retrier
	budgets []*retry.Budget // per client, made on its first failure
	rTokens int
	rRatio  float64
}

func newClientSide(sc *Scenario, seed uint64, mode Mode) (*clientSide, error) {
	salt := uint64(0xbac0ff)
	if mode == Unprotected {
		salt = 0xbac0fe
	}
	rng := rand.New(rand.NewPCG(seed, salt))
	c := sc.Client
	hintMax := c.HintJitter.D()
	if hintMax == 0 {
		hintMax = retry.NoJitter
	}
	// The simulator bounds a client's retries by its budget alone: its
	// attempts and waits are not counted per call.
	r, err := clientcore.NewRetrier(retry.Policy{MaxAttempts: math.MaxInt, MaxWait: math.MaxInt64,
		Backoff: retry.Backoff{Base: c.BackoffBase.D(), Cap: c.BackoffCap.D(), HintJitterMax: hintMax, Rand: rng.Float64}})
	if err != nil {
		return nil, fmt.Errorf("backoff: %w", err)
	}
	return &clientSide{retrier: r, budgets: make([]*retry.Budget, sc.Clients), rTokens: c.RetryTokens, rRatio: c.RetryRatio}, nil
}

// delay is the wait before attempt (from 0) after a failure with hint h,
// in ns, at least 1.
func (c *clientSide) delay(attempt int, h clientcore.Hint) int64 {
	return int64(c.retrier.Delay(attempt, h)) + 1
}

// success feeds client i's retry budget.
func (c *clientSide) success(i int) {
	if b := c.budgets[i]; b != nil {
		b.RecordSuccess()
	}
}

// retry records client i's failed attempt (from 0) in its retry budget and
// returns the wait before the next, in ns, or false when the budget says
// no.
func (c *clientSide) retry(i, attempt int, h clientcore.Hint) (int64, bool) {
	b := c.budgets[i]
	if b == nil {
		var err error
		if b, err = retry.NewBudget(c.rTokens, c.rRatio); err != nil {
			return 0, false // validated with the scenario; unreachable
		}
		c.budgets[i] = b
	}
	d, ok := c.retrier.Decide(b, attempt, 0, h, true)
	return int64(d) + 1, ok
}

// sessionReq is a session's first request as the nodes' Admitter sees it:
// the client's index, a value, so that deciding it allocates nothing.
type sessionReq uint32

// newGuards returns the protected run's components; id returns client i's
// ID.
func newGuards(sc *Scenario, st *store, seed uint64, id func(i int) string) (*guards, error) {
	g := &guards{ops: st.ops, st: st}
	if err := g.build(sc, st, seed, id); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// build makes g's components; on error, g.close releases those made.
func (g *guards) build(sc *Scenario, st *store, seed uint64, id func(i int) string) error {
	var err error
	p := sc.Protection
	if g.origin, err = st.budget("origin", originLimit(p.OriginBudget), 0); err != nil {
		return fmt.Errorf("origin budget: %w", err)
	}
	// A call keeps for itself what an origin call takes when the origin
	// is idle: its base latency and a mean service time (capacity ÷
	// workers).
	minCall := sc.Origin.Latency.D() + time.Duration(float64(sc.Origin.Concurrency)/sc.Origin.Capacity*float64(time.Second))
	gc := originguard.Config{Budget: g.origin, Name: "origin", MaxWait: originMaxWait,
		MinCallTime: max(minCall, time.Nanosecond), Clock: st.clock.lend()}
	var room limiter.Headroom // nil: rollouts and admission at their own rates
	if hs := p.Headroom; hs != nil {
		if g.ctl, err = st.headroomController(hs); err != nil {
			return fmt.Errorf("headroom: %w", err)
		}
		o, err := g.ctl.Origin("origin")
		if err != nil {
			return fmt.Errorf("headroom: %w", err)
		}
		g.room = newFleetHeadroom(o, st.redis == nil, st.clock, hs.Interval.D())
		gc.Headroom, room = g.room, g.room
	}
	if g.guard, err = originguard.New(gc); err != nil {
		return fmt.Errorf("origin guard: %w", err)
	}
	g.holds = make([]originguard.Hold, sc.Clients)
	// The horizon is the operator's setting, and the slot table holds
	// what it books (rate × horizon, with room for the slots' grace): no
	// size is taken from the exact client count.
	slots := int(math.Min(2*p.AdmissionRate*p.AdmissionHorizon.Seconds(), float64(MaxClients))) + 1024
	if g.admission, err = st.admission(admissionLimit(p.AdmissionRate), p.AdmissionHorizon.D(), slots, room); err != nil {
		return fmt.Errorf("admission: %w", err)
	}
	g.admission.SetSalt(fmt.Sprintf("%s-%d", sc.Name, seed))
	// The nodes answer a session's first request as the transports do,
	// through the one server-side decision they share: the client ID is
	// the request's (Herdcap-Client), and no ticket is presented (a
	// reconnecting client starts a new session).
	if g.admitter, err = serverside.NewAdmitter(serverside.AdmitConfig[sessionReq]{
		Common: serverside.Common[sessionReq]{Names: serverside.Names{Component: "simulate: node admission"}},
		Gate:   g.admission,
		Key:    func(r sessionReq) (string, error) { return id(int(r)), nil },
		Path:   "protection",
	}); err != nil {
		return fmt.Errorf("admission: %w", err)
	}
	if sc.Trigger.Kind == KindRogueInvalidate || sc.Trigger.Kind == KindIncident {
		is, err := st.invalidateStore()
		if err != nil {
			return fmt.Errorf("invalidation store: %w", err)
		}
		if g.push, err = st.budget("push", pushLimit(p.PushBudget, p.PushInterval.D()), 0); err != nil {
			return fmt.Errorf("push budget: %w", err)
		}
		guard := invalidate.Guard{MinDuration: p.MinDuration.D(), MaxRate: p.RolloutRate}
		for k := range sc.Nodes {
			// The Due cache lives one tick, so that every node answers
			// (and pushes) a release within a tick of it.
			c, err := invalidate.NewCoordinator(is, invalidate.Config{Clock: st.clock.lend(), Node: fmt.Sprintf("node-%d", k),
				Guard: guard, AdvanceInterval: p.Tick.D(), CacheTTL: p.PushInterval.D() / 2,
				Headroom: room, CallsPerClient: p.CallsPerClient,
				Logger: slog.New(restoreCounter{&g.restores})})
			if err != nil {
				return fmt.Errorf("coordinator: %w", err)
			}
			g.coords = append(g.coords, c)
			// The Due cache lives half a push interval, so that every
			// node's push sees a release within one interval of it.
			// Concurrency 1: the pusher runs in the simulation's goroutine,
			// in order, so the run stays deterministic.
			pu, err := invalidate.NewPusher(c, invalidate.PushConfig{Budget: g.push, BudgetKey: "push", Concurrency: 1})
			if err != nil {
				return fmt.Errorf("pusher: %w", err)
			}
			g.pushers = append(g.pushers, pu)
			// The node tells a client its notices on a request as
			// httpmw.Invalidate and grpcmw.Invalidate do. The Notifier
			// serves a request without notices when the coordinator
			// fails, and logs it: the log stops the run instead, so that
			// a failed store changes no numbers.
			n, err := serverside.NewNotifier(serverside.NoticeConfig[sessionReq]{
				Common: serverside.Common[sessionReq]{Logger: slog.New(&g.failed),
					Names: serverside.Names{Component: "simulate: node notices"}},
				Coordinator: c,
				Key:         func(r sessionReq) (string, error) { return id(int(r)), nil },
				EpochField:  "Herdcap-Epoch",
			})
			if err != nil {
				return fmt.Errorf("notifier: %w", err)
			}
			g.notifiers = append(g.notifiers, n)
		}
	}
	return nil
}

func (g *guards) close() {
	for _, b := range []budget{g.origin, g.push} {
		if b != nil {
			b.Close()
		}
	}
	if g.admission != nil {
		g.admission.Close()
	}
	if g.room != nil {
		g.room.stop()
	}
	if g.ctl != nil {
		g.ctl.Close()
	}
}

// originMaxWait is the longest a node holds an origin call for its
// booked token before refusing it (originguard.Config.MaxWait).
const originMaxWait = time.Second

// reserveOrigin asks the nodes' origin guard for a call now, on the
// virtual clock, for a caller whose deadline is remaining from now:
// an allowed Hold with the wait until its token is due (never past the
// deadline less the guard's MinCallTime), or a refused one with when to
// come back.
func (g *guards) reserveOrigin(ctx context.Context, now int64, remaining time.Duration, lane originguard.Lane) (originguard.Hold, error) {
	h, err := g.guard.Reserve(ctx, epoch.Add(time.Duration(now)+remaining), lane)
	if err != nil {
		return h, fmt.Errorf("origin guard: %w", err)
	}
	return h, nil
}

// admit asks the nodes' Admitter for client i's new session now, on the
// virtual clock, as httpmw.Admit and grpcmw.Admit decide it: Pass, or
// Refuse with the wait the transport sends (RetryAfter, Exact). Any other
// verdict is an error: here it can only come from a store that failed
// (FailClosed): in a scenario's Redis outage the simulator takes it for
// the 503 it is (Unavailable, with RetryAfter); outside one it stops the
// run, since it must not change a run's numbers.
func (g *guards) admit(ctx context.Context, i int) (serverside.AdmitOutcome, error) {
	o := g.admitter.Decide(ctx, sessionReq(i), nil)
	if o.Verdict != serverside.Pass && o.Verdict != serverside.Refuse {
		return o, fmt.Errorf("admission: %v: %w", o.Verdict, o.Err)
	}
	return o, nil
}

// toldHint is what a client of httpmw.Transport reads from a 503 that
// says to come back after d (the client core's Hint): with exact, the
// whole milliseconds of Herdcap-Retry-After-Ms, rounded up (a slot the
// server spread: clientcore.Slot); else Retry-After's whole seconds,
// rounded up, at least 1 (a coarse hint: clientcore.Coarse). grpcmw
// sends the same exact milliseconds as its pushback trailer.
func toldHint(d time.Duration, exact bool) clientcore.Hint {
	if exact {
		return clientcore.Hint{Kind: clientcore.Slot, Wait: time.Duration(wire.CeilMillis(d)) * time.Millisecond}
	}
	return clientcore.Hint{Kind: clientcore.Coarse, Wait: time.Duration(max(wire.CeilSeconds(d), 1)) * time.Second}
}

// due asks node k's Notifier which notices client i must apply, on a
// request that carries the epoch it applied, and returns the epoch the
// client records once it has applied them (or applied, when none is due).
func (g *guards) due(ctx context.Context, k, i int, applied uint64) (uint64, error) {
	if g.notifiers == nil {
		return applied, nil
	}
	g.epochArg[0] = g.epochText(applied)
	o := g.notifiers[k].Decide(ctx, sessionReq(i), g.epochArg[:], true)
	if err := g.failed.err; err != nil {
		g.failed.err = nil // this request's: a tolerated one (a Redis outage) must not fail the next
		return applied, fmt.Errorf("due: %w", err)
	}
	if o.Verdict != serverside.Pass {
		return applied, fmt.Errorf("due: %v: %w", o.Verdict, o.Err)
	}
	if o.Value == "" {
		return applied, nil
	}
	ep, err := strconv.ParseUint(o.Epoch, 10, 64)
	if err != nil {
		return applied, fmt.Errorf("due: epoch %q: %w", o.Epoch, err)
	}
	return max(applied, ep), nil
}

// epochText returns e in decimal, from a cache of the last two asked: a
// run's clients hold one of a few epochs (0 and the rollout's), so a
// poll's request costs no allocation for it.
func (g *guards) epochText(e uint64) string {
	for _, c := range g.epochs {
		if c.text != "" && c.e == e {
			return c.text
		}
	}
	t := strconv.FormatUint(e, 10)
	g.epochs[1], g.epochs[0] = g.epochs[0], epochText{e, t}
	return t
}

// epochText is an epoch and its decimal text.
type epochText struct {
	e    uint64
	text string
}

// storeError is a slog.Handler that keeps the first error-level record's
// message: a notifier's report that its coordinator failed.
type storeError struct{ err error }

// Enabled reports whether level is an error.
func (e *storeError) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelError
}

// Handle keeps r's message as the error, if none is kept yet.
func (e *storeError) Handle(_ context.Context, r slog.Record) error {
	if e.err == nil {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				msg += ": " + a.Value.String()
			}
			return true
		})
		e.err = errors.New(msg)
	}
	return nil
}

// WithAttrs returns e: the records' attributes are not kept.
func (e *storeError) WithAttrs([]slog.Attr) slog.Handler { return e }

// WithGroup returns e.
func (e *storeError) WithGroup(string) slog.Handler { return e }
