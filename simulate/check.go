package simulate

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// checkProtection refuses protection settings whose protected run cannot
// keep its promises, whatever the seed and size (Validate calls it last):
//
//   - an origin budget above the origin's capacity: the budget would let
//     the protected run overload the origin it protects;
//   - an admission rate above the origin's capacity, in a scenario with
//     sessions (a reconnect storm, an incident, or clients that reconnect
//     on errors or invalidations): each admitted session is one origin call;
//   - for a rollout, when the scenario bounds protected changed_over_budget
//     by max X: a push budget whose rate alone, with the 5% of a peak window
//     its burst may take, exceeds X × the rollout rate, and a push interval
//     whose burst (one interval of the push budget) makes a second of
//     pushes at scale exceed X × the rollout rate, so that no peak window
//     of 1 s could hold, however large the fleet.
//
// With protection.headroom the origin budget and the admission rate are
// caps on what the origin's measured headroom allows, not the pace: they
// may exceed the capacity (validateHeadroom refuses a floor above it).
//
// The tick makes no burst of changes: a rollout's releases reach clients
// through the push budget, and the config change's dispatch spreads each
// tick's take evenly over the tick (measured with ticks of 100 ms, 5 s and
// 30 s on rogue-invalidate, reconnect-storm, incident and config-change at
// 7,777 and 100,000 clients, on the lenient origin: changed ÷ budget at
// most 1.055). So no tick is refused for the change bound.
func (s *Scenario) checkProtection() error {
	o, p := s.Origin, s.Protection
	capped := p.Headroom == nil
	if capped && p.OriginBudget > o.Capacity {
		return fieldErr("protection.origin_budget", "%s per second is above origin.capacity %s: the protected run would overload the origin",
			fmtNum(p.OriginBudget), fmtNum(o.Capacity))
	}
	if capped && s.hasSessions() && p.AdmissionRate > o.Capacity {
		return fieldErr("protection.admission_rate", "%s sessions per second is above origin.capacity %s (each session is one origin call; the admission rate defaults to protection.rollout_rate): admitted reconnects would overload the origin",
			fmtNum(p.AdmissionRate), fmtNum(o.Capacity))
	}
	if s.Trigger.Kind != KindRogueInvalidate && s.Trigger.Kind != KindIncident {
		return nil
	}
	x, at, ok := s.changeBound()
	if !ok {
		return nil
	}
	ratio := p.PushBudget / p.RolloutRate
	if ratio*(1+peakShare) > x+1e-9 {
		return fieldErr("protection.push_budget", "%s per second is %.4g × protection.rollout_rate: with its burst (up to 5%% of a peak window's pushes) a window can see %.4g × rollout_rate, above the bound %s (bounds[%d]); at most %.4g × rollout_rate",
			fmtNum(p.PushBudget), ratio, ratio*(1+peakShare), s.Bounds[at], at, x/(1+peakShare))
	}
	iv := p.PushInterval.Seconds()
	if ratio*(1+iv) > x+1e-9 {
		most := time.Duration((x/ratio - 1) * float64(time.Second)).Truncate(time.Millisecond)
		return fieldErr("protection.push_interval", "%v makes the push budget's burst one interval of pushes: with push_budget at %.4g × protection.rollout_rate a second of pushes can reach %.4g × rollout_rate however large the fleet, above the bound %s (bounds[%d]); at most %v",
			p.PushInterval.D(), ratio, ratio*(1+iv), s.Bounds[at], at, most)
	}
	return nil
}

// hasSessions reports whether the scenario's runs set up new sessions at
// the origin: reconnects after a drop, a reload, or an error.
func (s *Scenario) hasSessions() bool {
	return s.Trigger.Kind == KindReconnectStorm || s.Trigger.Kind == KindIncident ||
		s.Client.ReconnectOnInvalidate || s.Client.DisconnectOnError
}

// changeBound returns the tightest max of the scenario's own (not
// alternative) bounds on protected changed_over_budget, and its index.
func (s *Scenario) changeBound() (x float64, at int, ok bool) {
	for i, b := range s.Bounds {
		if b.Run == Protected && b.Metric == "changed_over_budget" && b.Max != nil && (!ok || *b.Max < x) {
			x, at, ok = *b.Max, i, true
		}
	}
	return x, at, ok
}

// Warnings returns what a valid scenario (after Defaults) will not show
// as its settings suggest, one message per finding, each naming the field
// like Validate's errors ("scenario.protection.rollout_rate: ..."); nil when
// there is nothing to say. Unlike Validate's refusals these can be meant:
// the runs are still sound, only slower or less telling than they look.
//
//   - A rollout whose origin calls (rollout_rate × the calls a client
//     makes when it applies the notice: one fetch, plus one session with
//     client.reconnect_on_invalidate; every fetch assumed to miss the node
//     cache, since the share that hits is not known beforehand) exceed the
//     origin budget: the budget paces the rollout, which converges slower
//     than its schedule (measured: a rollout at 5,000/s against a budget of
//     2,000/s converged 4.3–5.8× slower). A warning, not a refusal: the
//     origin stays protected, and with node cache hits the rollout may fit.
//   - An admission rate above the origin budget in a scenario with
//     sessions: the budget, not the admission, paces the reconnects.
//   - A duration too short to judge a collapse: the run's last
//     CollapseWindow must start after the trigger's work could be done
//     (Result.SettleS, estimated here); otherwise every bound on
//     "collapsed" fails with "not judged".
//   - A size at which a peak window (Result.PeakWindowS, ChangedWindowS)
//     is longer than a minute: the peaks are then averages over that long.
//   - A capacity change (origin.changes) that takes the origin's capacity
//     below the origin budget: the fixed budget will overload it while the
//     change lasts (a budget that follows the origin's headroom would not).
//   - A warm-up setting (protection.warm_workers, warm_chunk, fill_lease,
//     slow_start) for a trigger it does not apply to: it is ignored.
//   - A content push or a cold node paced by a fixed origin budget whose
//     burst is one call (a small size): the guard's background lane, which
//     the warm takes, keeps half the burst for the foreground, so the warm
//     gets nothing.
//
// With protection.headroom the first two and the last do not apply: the
// headroom, not the configured rates, paces the rollout, the admission and
// the origin calls.
func (s *Scenario) Warnings() []string {
	var out []string
	warn := func(path, format string, args ...any) {
		out = append(out, "scenario."+path+": "+fmt.Sprintf(format, args...))
	}
	p := s.Protection
	fixed := p.Headroom == nil
	if fixed && (s.Trigger.Kind == KindRogueInvalidate || s.Trigger.Kind == KindIncident) {
		calls, what := 1.0, "1 fetch"
		if s.Client.ReconnectOnInvalidate {
			calls, what = 2, "1 fetch and 1 session (client.reconnect_on_invalidate)"
		}
		if load := p.RolloutRate * calls; load > p.OriginBudget*(1+1e-9) {
			warn("protection.rollout_rate", "%s clients per second × %s each is %s origin calls per second, above protection.origin_budget %s (assuming every fetch misses the node cache): the origin budget will pace the rollout, which will converge slower than its schedule",
				fmtNum(p.RolloutRate), what, fmtNum(load), fmtNum(p.OriginBudget))
		}
	}
	if fixed && s.hasSessions() && p.AdmissionRate > p.OriginBudget*(1+1e-9) {
		warn("protection.admission_rate", "%s sessions per second is above protection.origin_budget %s: the origin budget, not the admission, will pace the reconnects",
			fmtNum(p.AdmissionRate), fmtNum(p.OriginBudget))
	}
	for k, c := range s.Origin.Changes {
		if capacity := s.Origin.Capacity * c.Factor; fixed && capacity < p.OriginBudget*(1-1e-9) {
			warn(fmt.Sprintf("origin.changes[%d].factor", k), "%s takes the origin's capacity to %s per second, below protection.origin_budget %s: the protected run's fixed budget will overload the origin while it lasts",
				fmtNum(c.Factor), fmtNum(capacity), fmtNum(p.OriginBudget))
		}
	}
	for _, f := range s.warmFields() {
		if f.set && !slices.Contains(f.kinds, s.Trigger.Kind) {
			warn(f.path, "applies to %s only: ignored for %s", strings.Join(f.kinds, " and "), s.Trigger.Kind)
		}
	}
	if fixed && s.warmKind() && originLimit(p.OriginBudget).Burst < 2 {
		warn("protection.origin_budget", "%s per second has a burst of 1 call: the origin guard's background lane takes a token only when the budget keeps half its burst, so the warm gets nothing; raise the budget or the size, or set protection.headroom",
			fmtNum(p.OriginBudget))
	}
	secs := int(s.Duration.D() / time.Second)
	at := s.Trigger.At.Seconds()
	if need := at + s.settleEstimate() + CollapseWindow.Seconds(); float64(secs) < need || secs-int(CollapseWindow/time.Second) < 60 {
		warn("duration", "%v is too short to judge a collapse: the last %v must start after trigger.at plus the trigger's work (about %.0f s), so a bound on \"collapsed\" will read \"not judged\" and fail; make it at least %v",
			s.Duration.D(), CollapseWindow, s.settleEstimate(), time.Duration(math.Ceil(max(need, 60+CollapseWindow.Seconds())))*time.Second)
	}
	if w := peakWindow(p.OriginBudget, originLimit(p.OriginBudget).Burst, secs); w > 60 {
		warn("clients", "at %d clients the origin budget (%s per second) is judged over %d s windows: its peak is an average over that long", s.Clients, fmtNum(p.OriginBudget), w)
	}
	if w := changeWindow(s, secs, 0); w > 60 {
		warn("clients", "at %d clients the change is judged over %d s windows: changed ÷ budget is an average over that long", s.Clients, w)
	}
	return out
}

// settleEstimate is Result.SettleS as the scenario predicts it, for the
// run that takes longer: the schedule of its change plus one wave, one
// origin call per affected client at full capacity, and a minute. The
// clients a blip drops are estimated as their expected number.
func (s *Scenario) settleEstimate() float64 {
	p := s.Protection
	var affected, schedule, wave float64
	switch s.Trigger.Kind {
	case KindRogueInvalidate, KindIncident:
		affected = float64(s.Clients)
		schedule = max(affected/p.RolloutRate, p.MinDuration.Seconds())
		wave = schedule / float64(p.Cohorts)
	case KindReconnectStorm:
		affected = s.Trigger.Share * float64(s.Clients)
		switch s.Trigger.Cause {
		case "restart":
			affected = math.Ceil(float64(s.Clients-s.Trigger.Node) / float64(s.Nodes))
		case "cold-start":
			affected = float64(s.Clients)
		}
		schedule = s.outage().Seconds() + affected/p.AdmissionRate
		wave = p.Tick.Seconds()
	case KindConfigChange:
		affected = math.Round(s.Trigger.Share * float64(s.Clients))
		left := max(0, affected-s.Trigger.Limit*s.Trigger.At.Seconds())
		to := s.Trigger.Limit * s.Trigger.Factor
		schedule = max(rampSchedule(left, s.Trigger.Limit, to, p.Ramp.Seconds()), rampSchedule(left, s.Trigger.Limit, to, 0))
		wave = p.Tick.Seconds()
	}
	return max(60, schedule+wave, affected/s.Origin.Capacity, s.warmWork()/s.Origin.Capacity)
}
