package simulate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config configures Run and Compare. The zero value runs on the memory
// store, silently.
type Config struct {
	// Redis, when set, runs the coordination (budgets, admission,
	// rollouts) on that Redis, with the virtual time passed to every
	// script. Each run makes its own client from these options (with
	// ContextTimeoutEnabled, and read and write timeouts of at least 10 s),
	// uses its own key prefix, and deletes its keys when done. The same
	// seed gives the same numbers as on the memory store. A scenario with
	// Redis outages (Scenario.Redis.Outages) needs it: its protected run
	// is refused on the memory store.
	Redis *redis.Options
	// Progress, when set, is called about twice a second of wall time
	// during a run, and once at its end, from the goroutine running it
	// (Compare runs its two runs on two goroutines at once).
	Progress func(Progress)
}

// Comparison is a scenario run unprotected and protected with the same
// seed, and the checks of its bounds.
type Comparison struct {
	// Scenario is the scenario as run: defaults filled in, resized and
	// reseeded as asked.
	Scenario *Scenario `json:"scenario"`
	// Unprotected and Protected are the results of the two runs.
	Unprotected *Result `json:"unprotected"`
	Protected   *Result `json:"protected"`
	// Checks are the outcomes of the scenario's bounds, in its order.
	Checks []Check `json:"checks"`
	// Pass reports whether every bound held.
	Pass bool `json:"pass"`
}

// Compare runs sc unprotected and protected, at the same time on two
// goroutines (each run is single-threaded and independent of the other, so
// the results are those of running them one after the other), and checks
// its bounds. If either run fails, Compare cancels the other and returns
// the first error.
func Compare(ctx context.Context, sc *Scenario, cfg Config) (*Comparison, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		pr   *Result
		perr error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		pr, perr = Run(ctx, sc, Protected, cfg)
		if perr != nil {
			cancel()
		}
	}()
	un, uerr := Run(ctx, sc, Unprotected, cfg)
	if uerr != nil {
		cancel()
	}
	<-done
	if err := firstErr(uerr, perr); err != nil {
		return nil, err
	}
	checks, pass := checkBounds(sc, un, pr)
	c := *sc
	return &Comparison{Scenario: &c, Unprotected: un, Protected: pr, Checks: checks, Pass: pass}, nil
}

// Run replays sc in virtual time in the given mode and returns its result.
// It is deterministic: the same scenario and seed give the same Result,
// on the memory store and on Redis alike (but for the Redis operation
// counts). A run is single-threaded; runs may proceed in parallel.
func Run(ctx context.Context, sc *Scenario, mode Mode, cfg Config) (*Result, error) {
	if sc == nil {
		return nil, fmt.Errorf("%w: scenario: nil", ErrInvalidScenario)
	}
	if mode != Unprotected && mode != Protected {
		return nil, fmt.Errorf("simulate: unknown mode %q", mode)
	}
	c := *sc
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sc = &c
	s := newSim(ctx, sc, mode)
	s.progress = cfg.Progress
	st := &store{clock: s.clock, failure: failurePolicy(sc)}
	storeName := "memory"
	if cfg.Redis == nil && mode == Protected && len(sc.Redis.Outages) > 0 {
		return nil, errOutagesNeedRedis()
	}
	if cfg.Redis != nil {
		storeName = "redis"
		cleanup, err := st.openRedis(ctx, cfg.Redis)
		if err != nil {
			return nil, err
		}
		defer cleanup()
	}
	if s.policy != polNone {
		cs, err := newClientSide(sc, sc.Seed, mode)
		if err != nil {
			return nil, fmt.Errorf("simulate: %s: %w", sc.Name, err)
		}
		s.cli = cs
	}
	if mode == Protected {
		g, err := newGuards(sc, st, sc.Seed, s.id)
		if err != nil {
			return nil, fmt.Errorf("simulate: %s: %w", sc.Name, err)
		}
		defer g.close()
		s.prot = g
	}
	if sc.Trigger.Kind == KindConfigChange {
		var ramp time.Duration
		if mode == Protected {
			ramp = sc.Protection.Ramp.D()
		}
		b, err := st.budget("refresh", refreshLimit(sc.Trigger.Limit, sc.Protection.Tick.D()), ramp)
		if err != nil {
			return nil, fmt.Errorf("simulate: %s: refresh limit: %w", sc.Name, err)
		}
		defer b.Close()
		s.refreshB = b
	}
	if err := s.run(); err != nil {
		return nil, err
	}
	if st.redis != nil {
		if err := st.hook.realFailure(); err != nil {
			return nil, fmt.Errorf("simulate: %s %s: %w", sc.Name, mode, err)
		}
	}
	return s.result(storeName), nil
}

// firstErr returns the first error that is not a cancellation caused by
// the other, or the first error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// openRedis makes the run's Redis client, counting its commands and
// failing them during the scenario's outages (redisHook), under a fresh key
// prefix; cleanup deletes the prefix's keys and closes it.
func (st *store) openRedis(ctx context.Context, o *redis.Options) (cleanup func(), err error) {
	opts := *o
	// Every call is bounded by redisTimeout through its context; socket
	// timeouts shorter than that would only turn a slow machine into a
	// failed run.
	opts.ContextTimeoutEnabled = true
	opts.ReadTimeout = max(opts.ReadTimeout, redisTimeout)
	opts.WriteTimeout = max(opts.WriteTimeout, redisTimeout)
	c := redis.NewClient(&opts)
	var b [6]byte
	_, _ = rand.Read(b[:])
	st.prefix = "stormsim-" + hex.EncodeToString(b[:])
	st.hook = newRedisHook()
	st.ops = st.hook.ops
	c.AddHook(st.hook)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("simulate: redis: %w", err)
	}
	st.redis = c
	return func() {
		// Delete this run's keys: a background context, since the run's
		// may be done; with the outage over, whatever the run's end.
		st.hook.down.Store(false)
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.deleteKeys(cctx)
		c.Close()
	}, nil
}

// result builds the run's Result.
func (s *sim) result(storeName string) *Result {
	sc := s.sc
	r := &Result{
		Scenario: sc.Name, Mode: s.mode, Clients: sc.Clients, Nodes: sc.Nodes, Seed: sc.Seed, Store: storeName,
		OriginCalls: s.originCalls, IntendedCalls: s.intended, WastedCalls: s.wasted,
		Affected: s.affected, Series: s.series,
	}
	if s.prot != nil && s.prot.ops != nil {
		r.RedisOps = s.prot.ops.Load()
		r.RedisFailed = s.prot.st.hook.failed.Load()
		r.RolloutRestores = s.prot.restores.Load()
	}
	p := sc.Protection
	switch sc.Trigger.Kind {
	case KindRogueInvalidate, KindIncident:
		r.ChangeBudget = p.RolloutRate
		r.ScheduleS = max(float64(s.affected)/p.RolloutRate, p.MinDuration.Seconds())
		r.WaveS = r.ScheduleS / float64(p.Cohorts)
	case KindReconnectStorm:
		r.ChangeBudget = p.AdmissionRate
		r.OutageS = sc.outage().Seconds()
		r.ScheduleS = r.OutageS + float64(s.affected)/p.AdmissionRate
		r.WaveS = p.Tick.Seconds()
	case KindConfigChange:
		r.ChangeBudget = sc.Trigger.Limit * sc.Trigger.Factor
		var ramp float64
		if s.mode == Protected {
			ramp = p.Ramp.Seconds()
		}
		r.ScheduleS = rampSchedule(float64(s.refreshLeft), sc.Trigger.Limit, r.ChangeBudget, ramp)
		r.WaveS = p.Tick.Seconds()
	}
	secs := len(s.series.OriginCalls)
	r.PeakWindowS = float64(peakWindow(p.OriginBudget, originLimit(p.OriginBudget).Burst, secs))
	var queue float64 // the longest origin queueing delay from the trigger on
	for _, d := range s.series.QueueDelay[min(int(s.trig/int64(time.Second)), secs):] {
		queue = max(queue, d)
	}
	r.ChangedWindowS = float64(changeWindow(sc, secs, queue))
	r.Converged = s.affected > 0 && s.unconverged == 0
	r.ConvergeS = -1
	if r.Converged {
		r.ConvergeS = secondsOf(max(0, s.lastConverge-s.trig))
	}
	// Needs still open count with their age.
	for i := range s.cl {
		if t := s.cl[i].needAt; t >= 0 {
			s.hist.add(s.end - t)
		}
	}
	r.WarmKeys, r.WarmKey90, r.WarmDoneS = -1, -1, -1
	if sc.warmKind() {
		order, key90 := s.popularity(s.watch)
		r.WarmKeys, r.WarmKey90 = len(order), key90
		if m := s.warm; m != nil {
			r.WarmFailed, r.WarmKeysFailed = m.failed, m.keysFailed
			if m.doneAt >= 0 {
				r.WarmDoneS = secondsOf(m.doneAt - s.trig)
			}
		}
	}
	r.summarize(sc, &s.hist, int(s.trig/int64(time.Second)))
	return r
}

// changeWindow is the peak window (peakWindow) of the budget that paces
// sc's change, over which Result.ChangedOverBudget is measured: the push
// budget that delivers a rollout's notices (its rate is the push budget,
// a little above the rollout rate the bound is stated against), the
// admission gate that paces a reconnect storm, or the config change's
// final refresh limit.
//
// A reconnection is counted when its session's origin call completes, not
// when the gate admits it, so sessions admitted before a window can
// complete in it: one the origin budget held across the window's edge (one
// more client, see admissionLimit), and those that waited in the origin's
// queue, up to queue seconds (the run's longest queueing delay from the
// trigger on): rate × queue more. The realistic origin's variable service
// times made this the reconnect storms' excess: with service_cv 0 their
// changed ÷ budget was 1.025 at 1,000 and 20,000 clients, with cv 1 up to
// 1.175 over the admission gate's window alone (seeds 1–4).
// The refresh dispatch spreads each tick's take evenly over the tick and
// the ticks keep to their period within a millisecond, so its clients
// arrive at the limit's rate with a burst of one client plus a
// millisecond's worth (refreshBurst).
func changeWindow(sc *Scenario, secs int, queue float64) int {
	p := sc.Protection
	switch sc.Trigger.Kind {
	case KindRogueInvalidate, KindIncident:
		return peakWindow(p.PushBudget, pushLimit(p.PushBudget, p.PushInterval.D()).Burst, secs)
	case KindReconnectStorm:
		late := int(math.Ceil(p.AdmissionRate*queue - 1e-9))
		return peakWindow(p.AdmissionRate, admissionLimit(p.AdmissionRate).Burst+1+late, secs)
	case KindConfigChange:
		l := sc.Trigger.Limit * sc.Trigger.Factor
		return peakWindow(l, refreshBurst(l), secs)
	}
	return 1
}

// refreshBurst is the burst of the config change's paced refresh as the
// clients see it: one client (the spread rounds to whole clients) plus
// what the limit allows in the millisecond by which two ticks' spreads may
// overlap.
func refreshBurst(rate float64) int {
	return 1 + intervalBurst(rate, time.Millisecond)
}

// rampSchedule is how long a limit that goes from `from` to `to` per
// second, in a straight line over ramp seconds (0: at once), takes to let
// n clients through: the least t with ∫₀ᵗ limit = n.
func rampSchedule(n, from, to, ramp float64) float64 {
	if n <= 0 {
		return 0
	}
	if ramp <= 0 {
		return n / to
	}
	if inRamp := (from + to) / 2 * ramp; n > inRamp {
		return ramp + (n-inRamp)/to
	}
	// from·t + (to-from)/(2·ramp)·t² = n
	a := (to - from) / (2 * ramp)
	if a <= 0 {
		return n / from
	}
	return (-from + math.Sqrt(from*from+4*a*n)) / (2 * a)
}
