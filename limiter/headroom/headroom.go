package headroom

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/periodic"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/observe"
)

// Controller adapts one limit per origin to what the origin can take, in
// one process (New) or across a fleet through Redis (NewShared). Every
// Config.Interval, on its clock's timer, it runs one control interval for
// each origin on the outcomes recorded since the last (the package doc
// states the algorithm), and publishes the new limit and spare capacity,
// which Origin's Limit and Spare read without locking.
//
// A shared controller sends its node's reports of every origin to Redis in
// one script call per interval and applies the fleet's limit from the
// reply; while Redis cannot answer, SharedConfig.Failure decides. Record
// never waits for Redis: only the timer's goroutine calls it.
//
// A Controller is safe for concurrent use. Close it when done: it stops
// the timer (and a shared controller's heartbeat); Records are then
// dropped (counted in Stats.Dropped).
type Controller struct {
	interval time.Duration
	secs     float64
	clock    limiter.Clock
	logger   *slog.Logger
	origins  []*Origin // sorted by name
	byName   map[string]*Origin
	shared   *sharedStore // nil: the memory store
	closed   atomic.Bool

	loop      *periodic.Loop
	closeOnce sync.Once

	onHeadroom func(observe.Headroom) // Config.Observe.Headroom; nil: none
	onBreaker  func(observe.Breaker)  // Config.Observe.Breaker (a shared controller's); nil: none
}

// Origin is one origin's headroom: the limit a guard carries in its budget
// requests (Limit), the spare capacity background work may take (Spare),
// and the sink of the outcomes of calls to the origin (Record). It
// satisfies origin.Headroom (for the guard) and limiter.Headroom (for the
// storms that pace themselves by Spare: invalidate's rollouts, admission's
// gates). Its methods are safe for concurrent use;
// Limit, Spare and Record are allocation-free and take no lock.
type Origin struct {
	c    *Controller
	name string
	b    Bounds

	// The reports of the current interval, swapped out by the timer.
	// counts is indexed by lane and by outcome slot (see slot).
	counts  [2][5]atomic.Int64
	latSum  atomic.Int64 // ns
	latMin  atomic.Int64 // ns; noLatency: none
	dropped atomic.Int64

	// What the last interval published.
	rate  atomic.Uint64 // float64 bits, calls/s
	burst atomic.Int64
	spare atomic.Uint64 // float64 bits, calls/s

	// st is the origin's state in the memory store, or this node's local
	// control (FailLocal) in a shared one; only the timer's goroutine
	// touches it.
	st state

	mu    sync.Mutex // guards stats
	stats Stats
}

// An Origin is the origin.Headroom of a guard (origin.Config.Headroom) and
// the limiter.Headroom that paces rollouts and admission
// gates (invalidate.Config.Headroom, admission.Config.Headroom).
var (
	_ limiter.Headroom = (*Origin)(nil)
	_ origin.Headroom  = (*Origin)(nil)
)

// noLatency is latMin's "no success yet".
const noLatency = math.MaxInt64

// Stats describes an Origin after its last control interval. Rates are in
// calls per second, latencies are means or minimums of success latencies.
// For a shared controller, the counts and rates are the fleet's (as Redis
// aggregated the interval), unless Via is limiter.ViaFallback: then they
// are this node's own.
type Stats struct {
	// Limit is what Origin.Limit returns: the origin's fleet-wide limit.
	// Under local control (Via limiter.ViaFallback, FailLocal) this node
	// controls Limit/Live of it, its share, on its own reports.
	Limit limiter.Limit
	// Spare is what Origin.Spare returns.
	Spare float64
	// Calls and Refused are the calls that reached the origin and the
	// calls the guard refused, per second, by lane (indexed by origin.Lane).
	Calls, Refused [2]float64
	// Success, Overload, Timeout and Failure count the answered calls of
	// the interval by outcome.
	Success, Overload, Timeout, Failure int64
	// Baseline is the least success latency of the last 60 intervals;
	// Sample the mean success latency of the last. Zero: no success.
	Baseline, Sample time.Duration
	// Saturated reports that the last interval found the origin
	// saturated (its latency or its errors).
	Saturated bool
	// Capacity is the estimate of what the origin can serve, calls per
	// second: what it served in the last saturated interval (0: none
	// yet).
	Capacity float64
	// Live is the number of live nodes last seen (1 for a memory
	// controller).
	Live int64
	// Via says where the limit came from: limiter.ViaLocal (the memory
	// store), limiter.ViaRedis (the fleet's shared limit) or
	// limiter.ViaFallback (SharedConfig.Failure while Redis cannot
	// answer).
	Via limiter.Via
	// Intervals counts the control intervals run on the limit's source
	// (for the shared limit, the fleet's).
	Intervals int64
	// Dropped counts Records after Close.
	Dropped int64
}

// New returns a controller whose state lives in memory: one process (the
// nodes of a simulation may share it, each recording into the same
// Origins). It starts the control timer on Config.Clock. Bad
// configuration is an error wrapping limiter.ErrInvalidConfig that names
// the field.
func New(cfg Config) (*Controller, error) {
	c, err := newController(cfg, "headroom.Config")
	if err != nil {
		return nil, err
	}
	c.start()
	return c, nil
}

// start starts the control loop.
func (c *Controller) start() { c.loop = periodic.Start(c.clock, c.interval, c.tick) }

func newController(cfg Config, path string) (*Controller, error) {
	specs, iv, err := cfg.resolve(path)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Controller{
		interval: iv,
		secs:     float64(iv.Microseconds()) / 1e6,
		clock:    sysclock.Or(cfg.Clock),
		logger:   logger,
		byName:   make(map[string]*Origin, len(specs)),
	}
	if cfg.Observe != nil {
		c.onHeadroom, c.onBreaker = cfg.Observe.Headroom, cfg.Observe.Breaker
	}
	for _, s := range specs {
		o := &Origin{c: c, name: s.name, b: s.b, st: newState(s.b.Initial)}
		o.latMin.Store(noLatency)
		o.publish(s.b.Initial, 0)
		o.stats = Stats{Limit: o.Limit(), Live: 1, Via: limiter.ViaLocal}
		c.origins = append(c.origins, o)
		c.byName[s.name] = o
	}
	return c, nil
}

// Origin returns the headroom of the origin name. An unknown name is an
// error wrapping ErrUnknownOrigin; after Close, one wrapping
// limiter.ErrClosed.
func (c *Controller) Origin(name string) (*Origin, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("headroom: origin %q: %w", name, limiter.ErrClosed)
	}
	o, ok := c.byName[name]
	if !ok {
		known := make([]string, len(c.origins))
		for i, o := range c.origins {
			known[i] = fmt.Sprintf("%q", o.name)
		}
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownOrigin, name, strings.Join(known, ", "))
	}
	return o, nil
}

// Close stops the control timer (and a shared controller's heartbeat,
// leaving the live-node set). It is idempotent, and returns once an
// interval under way has ended. Records afterwards are dropped.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.loop.Stop() // returns once an interval under way has ended
		if c.shared != nil {
			c.shared.link.Close()
		}
	})
	return nil
}

// tick runs one control interval.
func (c *Controller) tick() {
	if c.shared != nil {
		c.shared.tick(c)
		return
	}
	for _, o := range c.origins {
		t := o.drain()
		step(&o.b, &o.st, t, c.secs)
		o.publish(o.st.limit, o.st.derive.spare)
		o.setStats(o.st.limit, o.st.derive.spare, t, o.st.derive, o.st.cap, 1, limiter.ViaLocal, o.st.n)
	}
}

// slot maps an outcome to its column of Origin.counts: Success, Overload,
// Timeout and Failure to 0-3, Refused to 4, Canceled to -1 (ignored), and
// any other value to Failure (as the guard counts it).
func slot(o origin.Outcome) int {
	switch o {
	case origin.Success, origin.Overload, origin.Timeout, origin.Failure:
		return int(o - origin.Success)
	case origin.Refused:
		return 4
	case origin.Canceled:
		return -1
	}
	return 3
}

// Record reports one call to the origin in lane: its latency and outcome,
// or a refusal by the guard (Outcome Refused, latency ignored). Canceled
// calls say nothing about the origin and are ignored, as are lanes other
// than origin.Foreground and origin.Background. It is allocation-free and takes no lock
// (a few atomic adds); after Close it only counts the call as dropped.
func (o *Origin) Record(lane origin.Lane, latency time.Duration, out origin.Outcome) {
	if o.c.closed.Load() {
		o.dropped.Add(1)
		return
	}
	i := slot(out)
	if i < 0 || lane > origin.Background {
		return
	}
	o.counts[lane][i].Add(1)
	if i != 0 {
		return
	}
	ns := max(int64(latency), 1)
	o.latSum.Add(ns)
	for {
		m := o.latMin.Load()
		if m <= ns || o.latMin.CompareAndSwap(m, ns) {
			return
		}
	}
}

// drain swaps out the reports of the interval that ends. A Record that
// runs concurrently may see its count go to this interval and its latency
// to the next: a negligible skew of the mean.
func (o *Origin) drain() tally {
	var t tally
	for lane := range o.counts {
		for i := range 4 {
			n := float64(o.counts[lane][i].Swap(0))
			t.out[i] += n
			t.calls[lane] += n
		}
		t.refused[lane] = float64(o.counts[lane][4].Swap(0))
	}
	t.latSum = float64(o.latSum.Swap(0))
	if m := o.latMin.Swap(noLatency); m != noLatency {
		t.latMin = float64(m)
	}
	return t
}

// publish makes rate and spare what Limit and Spare return.
func (o *Origin) publish(rate, spare float64) {
	o.rate.Store(math.Float64bits(rate))
	o.burst.Store(int64(max(1, math.Ceil(rate*o.b.Burst.Seconds()))))
	o.spare.Store(math.Float64bits(spare))
}

// setStats records the interval's Stats.
func (o *Origin) setStats(rate, spare float64, t tally, d derived, capacity float64, live int64, via limiter.Via, n int64) {
	s := Stats{
		Limit:     limiter.PerSecond(rate, int(o.burst.Load())),
		Spare:     spare,
		Success:   int64(t.out[0]),
		Overload:  int64(t.out[1]),
		Timeout:   int64(t.out[2]),
		Failure:   int64(t.out[3]),
		Baseline:  time.Duration(d.baseline),
		Sample:    time.Duration(d.sample),
		Saturated: d.saturated,
		Capacity:  capacity,
		Live:      live,
		Via:       via,
		Intervals: n,
	}
	for i := range s.Calls {
		s.Calls[i] = t.calls[i] / o.c.secs
		s.Refused[i] = t.refused[i] / o.c.secs
	}
	o.mu.Lock()
	prev := o.stats
	o.stats = s
	o.mu.Unlock()
	if f := o.c.onHeadroom; f != nil && (prev.Limit != s.Limit || prev.Spare != s.Spare || prev.Saturated != s.Saturated) {
		f(observe.Headroom{Origin: o.name, Limit: rate, Spare: spare, Saturated: s.Saturated})
	}
}

// Limit returns the origin's current limit: calls per second, with a
// burst of Bounds.Burst at that rate. It is the fleet's limit for a shared
// controller (a fleet budget under FailLocal divides it by the live nodes
// itself while Redis is away). Returned by value: no allocation.
func (o *Origin) Limit() limiter.Limit {
	return limiter.PerSecond(math.Float64frombits(o.rate.Load()), int(o.burst.Load()))
}

// Spare returns what background work may take now, in calls per second:
// the limit less the foreground's calls (refused ones included) of the
// last interval, never below 0.
func (o *Origin) Spare() float64 { return math.Float64frombits(o.spare.Load()) }

// Stats returns the origin's figures of the last control interval.
func (o *Origin) Stats() Stats {
	o.mu.Lock()
	s := o.stats
	o.mu.Unlock()
	s.Dropped = o.dropped.Load()
	return s
}
