package simulate

import (
	"math"
	"math/bits"
	"time"
)

// Series is a run's time series, one value per virtual second (index s
// covers [s, s+1) seconds). Counts are events in that second; levels
// (Connected, Unconverged, QueueDelay) are sampled at its end or its
// maximum, as stated.
type Series struct {
	// OriginCalls is the load offered to the origin: calls arriving.
	OriginCalls []float64
	// OriginErrors counts origin calls that timed out or were rejected.
	OriginErrors []float64
	// QueueDelay is the longest origin queueing delay met in the second,
	// in seconds.
	QueueDelay []float64
	// Views counts client polls (page views); Hits those served from the
	// client's cached copy. HitRate is Hits ÷ Views.
	Views, Hits, HitRate []float64
	// Requests counts client requests (fetch and session attempts);
	// Errors those that failed (timeouts, rejections, refusals, a node
	// that is down, and 503s from the origin budget). Refused counts the
	// errors that were refusals telling the client when to come back (a
	// 503 with Retry-After from the origin budget, an admission slot):
	// flow control rather than failure, though not a success either.
	Requests, Errors, Refused []float64
	// Goodput counts fetches that delivered data to a client.
	Goodput []float64
	// Changed counts clients that applied the change (an invalidation,
	// a refresh, or a reconnection after the drop).
	Changed []float64
	// Reconnects counts reconnect attempts, ReconnectsRefused those
	// admission or the origin budget refused with a slot to come back at.
	Reconnects, ReconnectsRefused []float64
	// Connected is the number of connected clients at the second's end.
	Connected []float64
	// Unconverged is the number of clients affected by the trigger and
	// not yet converged, at the second's end.
	Unconverged []float64
	// RedisOps counts Redis commands sent (0 on the memory store).
	RedisOps []float64
	// RedisFailed counts the coordination calls (Redis commands) that a
	// scenario's outage failed (RedisSpec.Outages), each answered by the
	// components' failure policy or a coordinator's cached copy.
	RedisFailed []float64
	// Limit and Spare are the origin's adaptive limit and its spare
	// capacity (calls per second) as the nodes apply them at the second's
	// end, with protection.headroom; 0 otherwise.
	Limit, Spare []float64
	// Lookups counts the fetches that looked up a node cache, Fresh those
	// it answered with the current content (a stale answer is not
	// fresh): the node hit rate, of every node, or with cold-node of the
	// replaced one.
	Lookups, Fresh []float64
	// WarmCalls counts the warm's origin calls (content-push and
	// cold-node, protected); they are in OriginCalls too.
	WarmCalls []float64
	// HotKeyCalls counts the origin calls for hot-key's key after it
	// expired, clients' fetches and fills alike (in OriginCalls too).
	HotKeyCalls []float64
	// LatencyP99 is the 99th percentile of the time to data (seconds) of
	// the needs that a fetch completed in the second, from a per-second
	// log-linear histogram (see NoLatency for its precision), or
	// NoLatency in a second that completed none. Needs still open are
	// not in it.
	LatencyP99 []float64

	// lat holds the per-second latency histograms during a run
	// (latBuckets counters per second); summarize turns them into
	// LatencyP99 and drops them.
	lat []uint32
}

// NoLatency marks a second of Series.LatencyP99 in which no need
// completed. A value is the upper edge of the histogram bucket of the
// percentile: buckets are 4 per power of two from 1 ms (each at most 25%
// wide) up to about 17 minutes, and longer times fall in the last bucket,
// whose lower edge (1048.576 s) stands for them.
const NoLatency = -1

// latBuckets is the number of per-second latency buckets: bucket 0 holds
// times under 1 ms, bucket 1+4e+k times in [(4+k)·2^e, (5+k)·2^e) quarter
// milliseconds, and the last everything from 2^20 ms up.
const latBuckets = 82

// latIndex is the latency bucket of ns nanoseconds: integer work only, so
// that the hot path stays cheap.
func latIndex(ns int64) int {
	q := uint64(max(ns, 0)) / 250_000 // quarter milliseconds
	if q < 4 {
		return 0
	}
	e := bits.Len64(q) - 3
	return min(1+4*e+int(q>>e)-4, latBuckets-1)
}

// latUpper is the upper edge of bucket i in seconds (the last bucket's
// lower edge).
func latUpper(i int) float64 {
	switch {
	case i == 0:
		return 1e-3
	case i == latBuckets-1:
		return float64(uint64(1)<<20) / 1e3
	}
	e, k := (i-1)/4, (i-1)%4
	return float64(uint64(5+k)<<e) / 4000 // quarter milliseconds to seconds, correctly rounded
}

// addLatency records a need completed at virtual second sec after ns.
func (s *Series) addLatency(sec int, ns int64) {
	if sec >= 0 && sec < len(s.LatencyP99) {
		s.lat[sec*latBuckets+latIndex(ns)]++
	}
}

// latencyP99 fills LatencyP99 from the histograms and drops them.
func (s *Series) latencyP99() {
	for sec := range s.LatencyP99 {
		h := s.lat[sec*latBuckets : (sec+1)*latBuckets]
		var n uint64
		for _, c := range h {
			n += uint64(c)
		}
		s.LatencyP99[sec] = NoLatency
		if n == 0 {
			continue
		}
		rank := (99*n + 99) / 100 // ⌈0.99 n⌉
		var c uint64
		for i, k := range h {
			c += uint64(k)
			if c >= rank {
				s.LatencyP99[sec] = latUpper(i)
				break
			}
		}
	}
	s.lat = nil
}

func newSeries(secs int) *Series {
	f := func() []float64 { return make([]float64, secs) }
	return &Series{
		OriginCalls: f(), OriginErrors: f(), QueueDelay: f(),
		Views: f(), Hits: f(), HitRate: f(),
		Requests: f(), Errors: f(), Refused: f(), Goodput: f(), Changed: f(),
		Reconnects: f(), ReconnectsRefused: f(), Connected: f(), Unconverged: f(), RedisOps: f(), RedisFailed: f(),
		Limit: f(), Spare: f(), LatencyP99: f(), lat: make([]uint32, secs*latBuckets),
		Lookups: f(), Fresh: f(), WarmCalls: f(), HotKeyCalls: f(),
	}
}

// Result is the outcome of one run, every number a pure function of the
// scenario, the mode and the seed. Rates are per virtual second; times are
// virtual seconds, counted from the trigger where they say so. -1 stands
// for "never".
type Result struct {
	// Scenario and Mode identify the run.
	Scenario string `json:"scenario"`
	Mode     Mode   `json:"mode"`
	// Clients, Nodes and Seed are the run's size and seed.
	Clients int    `json:"clients"`
	Nodes   int    `json:"nodes"`
	Seed    uint64 `json:"seed"`
	// Store is "memory" or "redis": where coordination lived.
	Store string `json:"store"`

	// SteadyRPS is the steady state: the mean origin load over the
	// seconds before the trigger (after the first ten).
	SteadyRPS float64 `json:"steady_rps"`
	// PeakRPS is the highest origin load in one second, PeakOverSteady
	// its ratio to SteadyRPS.
	//
	// PeakOverBudget is the highest mean origin load over PeakWindowS
	// seconds (whole seconds of the run, a sliding window) ÷ the
	// configured origin budget (BudgetRPS). PeakWindowS is the origin
	// budget's peak window: the least whole number of seconds in which the
	// budget's burst is at most 5% of its allowance (1 s from 20 calls per
	// second on; 10 s for a budget of 2 per second, whose one-call burst
	// would make a 1-second peak of 2 calls read 1.5 × budget). A token
	// bucket lets through at most rate × W + burst in W seconds, so a run
	// whose every origin call passes the budget has PeakOverBudget ≤ 1.05
	// by construction. Both runs are measured over the same window.
	PeakRPS        float64 `json:"peak_rps"`
	PeakOverSteady float64 `json:"peak_over_steady"`
	BudgetRPS      float64 `json:"budget_rps"`
	PeakOverBudget float64 `json:"peak_over_budget"`
	PeakWindowS    float64 `json:"peak_window_s"`
	// CapacityRPS is the origin's capacity; OverloadCalls the origin load
	// above it, summed over the seconds (requests).
	CapacityRPS   float64 `json:"capacity_rps"`
	OverloadCalls float64 `json:"overload_calls"`
	// OriginCalls is every call that reached the origin; IntendedCalls
	// the calls a fault-free system would have made for the same client
	// needs (each fetch that misses the node cache once, and one session
	// per client the trigger dropped); Amplification their ratio.
	OriginCalls   int64   `json:"origin_calls"`
	IntendedCalls int64   `json:"intended_calls"`
	Amplification float64 `json:"amplification"`
	// WastedCalls counts origin calls on which the origin spent work
	// that nobody received: served (in part, or whole with
	// Origin.FinishAbandoned) after their caller had given up.
	WastedCalls int64 `json:"wasted_calls"`
	// ChangedPeak is the most clients that applied the change in one
	// second; ChangeBudget the budget meant to bound it (the rollout rate,
	// the admission rate, or the config change's final limit).
	//
	// ChangedOverBudget is the highest mean number of clients that applied
	// the change per second over ChangedWindowS seconds (a sliding window)
	// ÷ ChangeBudget. ChangedWindowS is the peak window (see PeakWindowS)
	// of the budget that paces the change: the push budget for a rollout
	// (1.02 × the rollout rate by default, its burst one push interval and
	// one notice), the admission gate for a reconnect storm (its burst
	// counts one more client for a session the origin budget held across
	// the window's edge, and the admission rate × the run's longest origin
	// queueing delay for sessions that waited in the origin's queue: a
	// reconnection counts when its session completes), the refresh limit
	// (spread over each tick) for a config change.
	// Over it the pacing budget lets through at most 1.05 × its rate: 1.071
	// × the rollout rate for a default push budget, under the bound of 1.1.
	ChangedPeak       float64 `json:"changed_peak"`
	ChangeBudget      float64 `json:"change_budget"`
	ChangedOverBudget float64 `json:"changed_over_budget"`
	ChangedWindowS    float64 `json:"changed_window_s"`
	// MaxStepRPS is the largest change of origin load from one second to
	// the next.
	MaxStepRPS float64 `json:"max_step_rps"`
	// MaxStepOverCapacity is MaxStepRPS ÷ CapacityRPS: the step as a share
	// of what the origin can take, comparable across sizes.
	MaxStepOverCapacity float64 `json:"max_step_over_capacity"`
	// MaxRiseRPS is the largest increase of origin load from one second to
	// the next (a sudden drop, when work runs out, harms nobody);
	// MaxRiseOverCapacity its share of the capacity.
	MaxRiseRPS          float64 `json:"max_rise_rps"`
	MaxRiseOverCapacity float64 `json:"max_rise_over_capacity"`
	// Affected is the number of clients the trigger affected. Converged
	// reports whether every one of them converged before the run ended,
	// ConvergeS when the last did (from the trigger; -1 if not).
	Affected  int     `json:"affected"`
	Converged bool    `json:"converged"`
	ConvergeS float64 `json:"converge_s"`
	// ScheduleS is the fastest the change budget lets the affected
	// clients change (Affected ÷ ChangeBudget, and no less than the
	// rollout's least duration), WaveS one wave of it;
	// ConvergeOverSchedule is (ConvergeS − WaveS) ÷ ScheduleS (-1 when not
	// converged).
	ScheduleS            float64 `json:"schedule_s"`
	WaveS                float64 `json:"wave_s"`
	ConvergeOverSchedule float64 `json:"converge_over_schedule"`
	// PhysicalS is the fastest the origin lets an invalidation's clients
	// change, whatever paces them: the storm's work at the origin (its
	// calls above SteadyRPS, the load measured before the trigger, from
	// the trigger until the fleet converged) ÷ (the capacity less
	// SteadyRPS); -1 for other triggers, a run that did not converge, or
	// an origin the steady load already fills. It is measured, not taken
	// from Protection.CallsPerClient: a told client whose refetch the
	// node cache answers costs the origin nothing.
	// ConvergeOverPhysical is ConvergeS ÷ max(PhysicalS, the rollout's
	// least duration) (-1 when not converged or PhysicalS is -1).
	PhysicalS            float64 `json:"physical_s"`
	ConvergeOverPhysical float64 `json:"converge_over_physical"`
	// PeakOverCapacity is the highest origin load over PeakCapacityWindowS
	// seconds as a share of the capacity of those seconds (with
	// Origin.Changes), the window being the peak window of a budget at
	// the capacity with a burst of 5% of a second (1 s at scale).
	PeakOverCapacity    float64 `json:"peak_over_capacity"`
	PeakCapacityWindowS float64 `json:"peak_capacity_window_s"`
	// With Protection.Headroom and a capacity change that ends
	// (Origin.Changes' first with a factor below 1 and a For): LimitDropS
	// is the time from the drop until the limit the nodes apply is at most
	// 1.1 × the new capacity, LimitReturnS from the capacity's return
	// until the limit is at least 0.9 × the capacity (each -1: never), and
	// LimitSwing the largest max ÷ min − 1 of the limit over the settled
	// part of each phase (from SettleMarginS after it met its mark to the
	// phase's end). All -1 (LimitSwing 0) without such a change.
	LimitDropS   float64 `json:"limit_drop_s"`
	LimitReturnS float64 `json:"limit_return_s"`
	LimitSwing   float64 `json:"limit_swing"`
	// NormalHitRate is the mean hit rate before the trigger, MinHitRate
	// the lowest one-second hit rate after it, HitRecoverS the time from
	// the trigger until the hit rate is back at 90% of normal for good
	// (-1 if never).
	NormalHitRate float64 `json:"normal_hit_rate"`
	MinHitRate    float64 `json:"min_hit_rate"`
	HitRecoverS   float64 `json:"hit_recover_s"`
	// Recovered reports whether the system recovered after the trigger:
	// from some second on, to the end of the run (at least a minute), the
	// trailing minute always had a hit rate of at least 90% of normal and
	// an error rate under 1%. RecoverS is when (from the trigger; -1 if
	// not).
	Recovered bool    `json:"recovered"`
	RecoverS  float64 `json:"recover_s"`
	// SettleS is how long after the trigger its own work could last: the
	// longest of ScheduleS plus one wave (what the change budget needs),
	// one origin call per affected client at the origin's full capacity,
	// and a minute. A failure that lasts beyond it outlasts its trigger.
	SettleS float64 `json:"settle_s"`
	// Collapsed reports a metastable collapse: the failure outlasting its
	// trigger. It is judged over the run's last CollapseWindow, which must
	// start after SettleS (CollapseWindowS is its length): collapsed when in
	// every second of that window the trailing 10 seconds were failing,
	// that is the origin's offered load was at least its capacity, or at
	// least 10% of client requests failed, or the goodput was under half
	// its normal (before the trigger). A run that recovers before its end
	// did not collapse, however late.
	//
	// CollapseJudged reports whether the run was long enough to judge it:
	// its last CollapseWindow starts after the trigger's SettleS (and after
	// the first minute). When it is not, CollapseWindowS is 0, Collapsed is
	// false and means nothing: a bound on "collapsed" then fails with got
	// "not judged", never passes (Scenario.Warnings says so beforehand).
	Collapsed       bool    `json:"collapsed"`
	CollapseWindowS float64 `json:"collapse_window_s"`
	CollapseJudged  bool    `json:"collapse_judged"`
	// GoodputRPS is the mean rate of fetches that delivered data after the
	// trigger; ErrorRate the share of client requests that failed after
	// it.
	GoodputRPS float64 `json:"goodput_rps"`
	ErrorRate  float64 `json:"error_rate"`
	// LatencyP50S, LatencyP99S and LatencyP999S are percentiles of the
	// client's time to data: from the moment a client needs data (its copy
	// dropped or stale) until a fetch delivers it, retries and backoff
	// included; needs still open at the end count with their age.
	LatencyP50S  float64 `json:"latency_p50_s"`
	LatencyP99S  float64 `json:"latency_p99_s"`
	LatencyP999S float64 `json:"latency_p999_s"`
	// ReconnectPeak is the most reconnect attempts in one second that
	// were not refused (they went on to set up a session, or failed
	// trying); RefusedReconnects counts the attempts admission or the
	// origin budget refused with a slot to come back at, and
	// RefusedReconnectPeak their most in one second.
	ReconnectPeak        float64 `json:"reconnect_peak"`
	RefusedReconnects    int64   `json:"refused_reconnects"`
	RefusedReconnectPeak float64 `json:"refused_reconnect_peak"`
	// RedisOps is the number of Redis commands the run sent,
	// RedisOpsPeak and RedisOpsMean per second (0 on the memory store).
	RedisOps     int64   `json:"redis_ops"`
	RedisOpsPeak float64 `json:"redis_ops_peak"`
	RedisOpsMean float64 `json:"redis_ops_mean"`
	// RedisFailed is the number of coordination calls (Redis commands)
	// the scenario's outages failed (Series.RedisFailed): the failure
	// policy (RedisSpec.Failure) answered the budgets' and the admission
	// gate's, the coordinators answered from their cached copy. 0 without
	// outages.
	RedisFailed int64 `json:"redis_failed"`
	// RolloutRestores counts the times a node re-registered the rollout
	// after Redis lost its data (an outage with lose_data): the restore
	// path of invalidate's durability. 0 without data loss.
	RolloutRestores int64 `json:"rollout_restores"`

	// OutageS is how long the trigger's own outage lasted, during which
	// no protection can serve the affected clients: the downtime of
	// every node in a cold start; for a restarted node, the time the load
	// balancer takes to notice it is down (Node.HealthCheck, or its
	// downtime if shorter), after which its clients reconnect to the
	// other nodes; 0 for other triggers. The schedule (ScheduleS) starts
	// after it.
	OutageS float64 `json:"outage_s"`
	// The storm's harm (see harm.go): StormS is the storm's length, from
	// the end of the trigger's outage (the trigger itself, when it has
	// none) until every affected client converged and the run recovered
	// (until the end of the run when either never happened; at least a
	// minute). Over it, StormRequests client requests were made;
	// StormFailedShare is the share that failed (timeouts, rejections, a
	// node down: errors that are not refusals), StormRefusedShare the
	// share refused with a time to come back. OverloadS counts the seconds
	// after the trigger in which the load offered to the origin exceeded
	// its capacity (as changed by Origin.Changes).
	StormS            float64 `json:"storm_s"`
	StormRequests     int64   `json:"storm_requests"`
	StormFailedShare  float64 `json:"storm_failed_share"`
	StormRefusedShare float64 `json:"storm_refused_share"`
	OverloadS         float64 `json:"overload_s"`
	// HitDropped reports whether the hit rate fell below 90% of normal
	// after the trigger at all (HitRecoverS is 0 when it did not).
	HitDropped bool `json:"hit_dropped"`

	// The warm-up triggers' figures (content-push, cold-node; see warm.go),
	// -1 where they do not apply. NodeHitRate is the node hit rate
	// (Series.Fresh ÷ Lookups: fetches the node cache answered with the
	// current content) before the trigger; Hit90S the time from the
	// trigger until it first is at least 90% (-1: never). WarmKeys is
	// the number of keys the clients read (of the replaced node, for
	// cold-node), WarmKey90 the fewest of them, hottest first, that carry
	// 90% of those clients. WarmPhysicalS is the physical limit of Hit90S:
	// WarmKey90 keys at one origin call each ÷ the origin's spare capacity
	// during the warm (its capacity less the calls that were not the
	// warm's, averaged over the trigger's second to Hit90S; -1 when that
	// spare is not positive, an overloaded origin), and Hit90OverPhysical
	// Hit90S ÷ WarmPhysicalS. WarmDoneS is when the warm had been through
	// every key (-1: not by the end, or no warm), WarmFailed counts its
	// fetches that failed, WarmKeysFailed the keys it reported failed
	// after its retries.
	NodeHitRate       float64 `json:"node_hit_rate"`
	Hit90S            float64 `json:"hit90_s"`
	WarmKeys          int     `json:"warm_keys"`
	WarmKey90         int     `json:"warm_key90"`
	WarmPhysicalS     float64 `json:"warm_physical_s"`
	Hit90OverPhysical float64 `json:"hit90_over_physical"`
	WarmDoneS         float64 `json:"warm_done_s"`
	WarmFailed        int64   `json:"warm_failed"`
	WarmKeysFailed    int64   `json:"warm_keys_failed"`
	// HotKeyFetches is, for hot-key, the origin fetches of the key in the
	// first node-cache TTL after it expired everywhere (one expiry), and
	// HotKeyLeasePeak the most in any protection.fill_lease window after
	// the trigger (-1 for other triggers).
	HotKeyFetches   int64 `json:"hot_key_fetches"`
	HotKeyLeasePeak int64 `json:"hot_key_lease_peak"`

	// Series is the per-second time series (not in the JSON).
	Series *Series `json:"-"`
}

// hist is a log-linear latency histogram: 16 buckets per power of two
// from 1 µs, so a percentile is exact to about 4%. Fixed size, no
// allocation per sample.
type hist struct {
	counts [64 * 16]int64
	n      int64
}

func histIndex(ns int64) int {
	us := float64(ns) / 1e3
	if us < 1 {
		return 0
	}
	i := int(math.Log2(us)*16) + 1
	return min(i, len(hist{}.counts)-1)
}

func (h *hist) add(ns int64) {
	h.counts[histIndex(ns)]++
	h.n++
}

// quantile returns the q-quantile in seconds: the upper edge of its bucket.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var c int64
	for i, k := range h.counts {
		c += k
		if c >= rank {
			if i == 0 {
				return 1e-6
			}
			return round6(math.Exp2(float64(i)/16) * 1e-6)
		}
	}
	return 0
}

// round6 rounds to six significant digits, so reports stay readable.
func round6(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	p := math.Pow(10, 5-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*p) / p
}

// summarize computes r's summary from its series and counters.
func (r *Result) summarize(sc *Scenario, h *hist, trig int) {
	s := r.Series
	secs := len(s.OriginCalls)
	s.latencyP99()
	for i := range secs {
		if s.Views[i] > 0 {
			s.HitRate[i] = s.Hits[i] / s.Views[i]
		}
	}
	mean := func(x []float64, from, to int) float64 {
		if to <= from {
			return 0
		}
		var t float64
		for _, v := range x[from:to] {
			t += v
		}
		return t / float64(to-from)
	}
	from := min(10, trig/2)
	r.SteadyRPS = round6(mean(s.OriginCalls, from, trig))
	var views, hits float64
	for i := from; i < trig; i++ {
		views += s.Views[i]
		hits += s.Hits[i]
	}
	if views > 0 {
		r.NormalHitRate = round6(hits / views)
	}
	r.CapacityRPS = round6(sc.Origin.Capacity)
	r.BudgetRPS = round6(sc.Protection.OriginBudget)
	for i := range secs {
		r.PeakRPS = max(r.PeakRPS, s.OriginCalls[i])
		r.OverloadCalls += max(0, s.OriginCalls[i]-sc.Origin.capacityAt(i))
		r.ChangedPeak = max(r.ChangedPeak, s.Changed[i])
		r.ReconnectPeak = max(r.ReconnectPeak, s.Reconnects[i]-s.ReconnectsRefused[i])
		r.RefusedReconnects += int64(s.ReconnectsRefused[i])
		r.RefusedReconnectPeak = max(r.RefusedReconnectPeak, s.ReconnectsRefused[i])
		r.RedisOpsPeak = max(r.RedisOpsPeak, s.RedisOps[i])
		if i > 0 {
			r.MaxStepRPS = max(r.MaxStepRPS, math.Abs(s.OriginCalls[i]-s.OriginCalls[i-1]))
			r.MaxRiseRPS = max(r.MaxRiseRPS, s.OriginCalls[i]-s.OriginCalls[i-1])
		}
	}
	r.OverloadCalls = round6(r.OverloadCalls)
	r.MaxStepOverCapacity = round6(r.MaxStepRPS / sc.Origin.Capacity)
	r.MaxRiseOverCapacity = round6(r.MaxRiseRPS / sc.Origin.Capacity)
	r.PeakOverSteady = round6(r.PeakRPS / math.Max(r.SteadyRPS, 1e-9))
	r.PeakOverBudget = round6(windowPeak(s.OriginCalls, int(r.PeakWindowS)) / r.BudgetRPS)
	if r.IntendedCalls > 0 {
		r.Amplification = round6(float64(r.OriginCalls) / float64(r.IntendedCalls))
	}
	if r.ChangeBudget > 0 {
		r.ChangedOverBudget = round6(windowPeak(s.Changed, int(r.ChangedWindowS)) / r.ChangeBudget)
	}
	r.RedisOpsMean = round6(mean(s.RedisOps, 0, secs))

	// Hit rate after the trigger, and its recovery to 90% of normal.
	r.MinHitRate = 1
	lastLow := -1
	for i := trig; i < secs; i++ {
		r.MinHitRate = min(r.MinHitRate, s.HitRate[i])
		if s.HitRate[i] < 0.9*r.NormalHitRate {
			lastLow = i
		}
	}
	r.MinHitRate = round6(r.MinHitRate)
	r.HitRecoverS = -1
	if lastLow < secs-1 {
		r.HitRecoverS = float64(max(lastLow+1, trig) - trig)
	}

	// Recovery: from some second to the end, over the trailing minute
	// (so that one refusal among few requests, or a few misses, is not a
	// failure), errors under 1% and the hit rate at 90% of normal, with at
	// least a minute left to show it.
	lastBad := trig - 1
	var reqs, errs, vs, hs float64
	for i := trig; i < secs; i++ {
		reqs += s.Requests[i]
		errs += s.Errors[i]
		vs += s.Views[i]
		hs += s.Hits[i]
		if j := i - 60; j >= trig {
			reqs -= s.Requests[j]
			errs -= s.Errors[j]
			vs -= s.Views[j]
			hs -= s.Hits[j]
		}
		if errs >= 0.01*math.Max(reqs, 1) || hs < 0.9*r.NormalHitRate*vs {
			lastBad = i
		}
	}
	r.RecoverS = -1
	if lastBad+1 <= secs-60 {
		r.Recovered = true
		r.RecoverS = float64(lastBad + 1 - trig)
	}
	r.collapse(sc, trig)

	var good float64
	reqs, errs = 0, 0
	for i := trig; i < secs; i++ {
		good += s.Goodput[i]
		reqs += s.Requests[i]
		errs += s.Errors[i]
	}
	r.GoodputRPS = round6(good / math.Max(float64(secs-trig), 1))
	if reqs > 0 {
		r.ErrorRate = round6(errs / reqs)
	}
	r.LatencyP50S = h.quantile(0.5)
	r.LatencyP99S = h.quantile(0.99)
	r.LatencyP999S = h.quantile(0.999)

	r.ConvergeOverSchedule = -1
	if r.Converged && r.ScheduleS > 0 {
		r.ConvergeOverSchedule = round6((r.ConvergeS - r.WaveS) / r.ScheduleS)
	}
	r.ScheduleS = round6(r.ScheduleS)
	r.WaveS = round6(r.WaveS)
	r.HitDropped = lastLow >= 0
	r.warmMetrics(sc, trig)
	r.harm(sc, trig)
	r.headroomMetrics(sc, trig)
}

// windowPeak is the highest mean of x over w consecutive entries (w < 1
// counts as 1; w beyond x as all of it).
func windowPeak(x []float64, w int) float64 {
	w = max(1, min(w, len(x)))
	if len(x) == 0 {
		return 0
	}
	var sum, peak float64
	for i, v := range x {
		sum += v
		if i >= w {
			sum -= x[i-w]
		}
		if i >= w-1 {
			peak = max(peak, sum)
		}
	}
	return peak / float64(w)
}

// secondsOf converts virtual ns to seconds, rounded to the millisecond.
func secondsOf(ns int64) float64 {
	return math.Round(float64(ns)/float64(time.Millisecond)) / 1e3
}

// CollapseWindow is the final stretch of a run over which a collapse is
// judged (see Result.Collapsed).
const CollapseWindow = 5 * time.Minute

// failWindow is the trailing window, in seconds, over which a second of
// the collapse window is judged failing.
const failWindow = 10

// collapse judges r's metastable collapse (see Result.Collapsed). It needs
// r.ScheduleS and r.WaveS.
func (r *Result) collapse(sc *Scenario, trig int) {
	s := r.Series
	secs := len(s.OriginCalls)
	r.SettleS = round6(max(60, r.ScheduleS+r.WaveS, float64(r.Affected)/sc.Origin.Capacity, sc.warmWork()/sc.Origin.Capacity))
	win := int(CollapseWindow / time.Second)
	from := secs - win
	if float64(from) < float64(trig)+r.SettleS || from < 60 {
		return // too short to tell
	}
	r.CollapseWindowS = float64(win)
	r.CollapseJudged = true
	var normal float64
	lo := min(10, trig/2)
	for i := lo; i < trig; i++ {
		normal += s.Goodput[i]
	}
	normal /= math.Max(float64(trig-lo), 1)
	// Trailing windows of failWindow seconds: long enough that a second
	// of noise is not a recovery, short enough to see one near the end.
	const w = failWindow
	// calls is the offered load less the capacity of each second (as
	// Origin.Changes makes it): failing at or above 0.
	var calls, reqs, errs, good float64
	for i := from - w; i < from; i++ {
		calls += s.OriginCalls[i] - sc.Origin.capacityAt(i)
		reqs += s.Requests[i]
		errs += s.Errors[i]
		good += s.Goodput[i]
	}
	for i := from; i < secs; i++ {
		calls += s.OriginCalls[i] - sc.Origin.capacityAt(i) - (s.OriginCalls[i-w] - sc.Origin.capacityAt(i-w))
		reqs += s.Requests[i] - s.Requests[i-w]
		errs += s.Errors[i] - s.Errors[i-w]
		good += s.Goodput[i] - s.Goodput[i-w]
		failing := calls >= 0 || (reqs > 0 && errs >= 0.1*reqs) || good < 0.5*w*normal
		if !failing {
			return
		}
	}
	r.Collapsed = true
}
