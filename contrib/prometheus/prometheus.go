// Package prometheus turns herdcap's observer hooks into Prometheus
// metrics.
//
// New registers herdcap's metrics on a caller-given prometheus.Registerer
// and returns the observe.Hooks that feed them; give the hooks to each
// component's Config.Observe (join them with other observers by
// observe.Join). Metrics follow Prometheus conventions: the herdcap_
// prefix, _total for counters, base units (_seconds). Labels name a
// policy, an origin or a state, never a limiter key, a client or a
// rollout: their number stays bounded whatever the traffic. Every metric
// and its labels are listed in the README ("Observing herdcap"), and
// alerts.yaml beside this file holds example alerting rules.
//
// This package lives in a module of its own, so that herdcap's core never
// depends on the Prometheus client.
package prometheus

import (
	"sync"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/herdcap/herdcap/observe"
)

// Metric names, for alerting rules and dashboards.
const (
	Decisions        = "herdcap_decisions_total"
	DecisionTokens   = "herdcap_decision_tokens_total"
	BreakerState     = "herdcap_breaker_state"
	BreakerChanges   = "herdcap_breaker_transitions_total"
	Fallback         = "herdcap_fallback_active"
	FallbackEntered  = "herdcap_fallback_entered_total"
	LeaseExchanges   = "herdcap_lease_exchanges_total"
	LeaseTokens      = "herdcap_lease_tokens_total"
	LeaseDuration    = "herdcap_lease_exchange_duration_seconds"
	Admissions       = "herdcap_admissions_total"
	AdmissionWait    = "herdcap_admission_wait_seconds"
	RolloutEvents    = "herdcap_rollout_events_total"
	Rollouts         = "herdcap_rollouts"
	CohortsReleased  = "herdcap_rollout_cohorts_released_total"
	WarmupEvents     = "herdcap_warmup_events_total"
	WarmupKeys       = "herdcap_warmup_keys_total"
	Warmups          = "herdcap_warmups"
	HeadroomLimit    = "herdcap_headroom_limit_per_second"
	HeadroomSpare    = "herdcap_headroom_spare_per_second"
	HeadroomSaturate = "herdcap_headroom_saturated"
	SlowStarts       = "herdcap_slowstart_decisions_total"
	SlowStartShare   = "herdcap_slowstart_share"
)

// metrics holds the collectors and the state the gauges of rollouts and
// warm-ups are computed from.
type metrics struct {
	decisions, tokens          *prom.CounterVec
	breaker                    *prom.GaugeVec
	breakerChanges             *prom.CounterVec
	fallback                   *prom.GaugeVec
	fallbackEntered            *prom.CounterVec
	leaseN, leaseTokens        *prom.CounterVec
	leaseDur                   *prom.HistogramVec
	admissions                 *prom.CounterVec
	slowStarts                 *prom.CounterVec
	slowStartShare             *prom.GaugeVec
	admissionWait              *prom.HistogramVec
	rolloutEvents              *prom.CounterVec
	cohorts                    prom.Counter
	rollouts                   *prom.GaugeVec
	warmupEvents, warmupKeys   *prom.CounterVec
	warmups                    *prom.GaugeVec
	limit, spare, saturated    *prom.GaugeVec
	mu                         sync.Mutex
	rolloutPhase, warmupPhases map[string]string // by ID: the phase last reported
	released                   map[string]int    // by rollout ID: the cohorts last reported released
}

// New registers herdcap's metrics on reg and returns the hooks that feed
// them. It fails if reg already holds metrics of the same names (call it
// once per registry). The hooks are safe for concurrent use and allocate
// nothing per decision once a label set has been seen.
func New(reg prom.Registerer) (*observe.Hooks, error) {
	m := &metrics{rolloutPhase: map[string]string{}, warmupPhases: map[string]string{}, released: map[string]int{}}
	counter := func(name, help string, labels ...string) *prom.CounterVec {
		return prom.NewCounterVec(prom.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prom.GaugeVec {
		return prom.NewGaugeVec(prom.GaugeOpts{Name: name, Help: help}, labels)
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prom.HistogramVec {
		return prom.NewHistogramVec(prom.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	m.decisions = counter(Decisions, "Budget decisions, by policy, outcome (allowed, denied, shadow) and source (local, redis, lease, fallback).", "policy", "outcome", "source")
	m.tokens = counter(DecisionTokens, "Tokens taken (allowed) or wanted (denied) by budget decisions.", "policy", "outcome")
	m.breaker = gauge(BreakerState, "1 for the state (closed, half-open, open) a Redis circuit breaker is in, 0 for the others.", "policy", "state")
	m.breakerChanges = counter(BreakerChanges, "Redis circuit breaker state changes, by the state changed to.", "policy", "to")
	m.fallback = gauge(Fallback, "1 while a Redis-backed budget answers from its failure policy.", "policy")
	m.fallbackEntered = counter(FallbackEntered, "Times a Redis-backed budget started answering from its failure policy.", "policy")
	m.leaseN = counter(LeaseExchanges, "Lease exchanges of Leased budgets with Redis.", "policy")
	m.leaseTokens = counter(LeaseTokens, "Tokens leased from Redis.", "policy")
	m.leaseDur = hist(LeaseDuration, "Round trip of a lease exchange.", prom.ExponentialBuckets(0.0005, 2, 12), "policy")
	m.admissions = counter(Admissions, "Admission gate decisions, by outcome (granted, rejoined, refused).", "policy", "outcome")
	m.admissionWait = hist(AdmissionWait, "Wait a refused session was told (its slot or deferral).", prom.ExponentialBuckets(0.01, 2, 14), "policy")
	m.rolloutEvents = counter(RolloutEvents, "Invalidation rollout events (started, cohort-released, paused, resumed, aborted, completed), as this node learnt them.", "event")
	m.cohorts = prom.NewCounter(prom.CounterOpts{Name: CohortsReleased, Help: "Cohorts released by invalidation rollouts, as this node learnt them."})
	m.rollouts = gauge(Rollouts, "Invalidation rollouts this node knows, by phase (running, paused).", "phase")
	m.warmupEvents = counter(WarmupEvents, "Warm-up events of this node (chunk-done, key-failed, phase).", "event")
	m.warmupKeys = counter(WarmupKeys, "Keys this node warmed (outcome warmed) or failed to (failed).", "outcome")
	m.warmups = gauge(Warmups, "Warm-ups this node knows, by phase (running, paused).", "phase")
	m.limit = gauge(HeadroomLimit, "An origin's shared limit, in calls per second.", "origin")
	m.spare = gauge(HeadroomSpare, "An origin's spare capacity, in calls per second.", "origin")
	m.saturated = gauge(HeadroomSaturate, "1 while an origin shows overload at its limit.", "origin")
	m.slowStarts = counter(SlowStarts, "Slow-start gate decisions, by reason (warm, ramp: admitted; share, budget: shed).", "policy", "reason")
	m.slowStartShare = gauge(SlowStartShare, "The share of traffic a slow-start gate admits, from its minimum to 1, as of its last decision.", "policy")
	for _, c := range []prom.Collector{m.slowStarts, m.slowStartShare, m.decisions, m.tokens, m.breaker, m.breakerChanges, m.fallback, m.fallbackEntered,
		m.leaseN, m.leaseTokens, m.leaseDur, m.admissions, m.admissionWait, m.rolloutEvents, m.cohorts, m.rollouts,
		m.warmupEvents, m.warmupKeys, m.warmups, m.limit, m.spare, m.saturated} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{"running", "paused"} {
		m.rollouts.WithLabelValues(p).Set(0)
		m.warmups.WithLabelValues(p).Set(0)
	}
	return &observe.Hooks{
		Decision:  m.decision,
		Breaker:   m.breakerChange,
		Fallback:  m.fallbackChange,
		Lease:     m.lease,
		Admission: m.admission,
		Rollout:   m.rollout,
		Warmup:    m.warmup,
		Headroom:  m.headroom,
		SlowStart: m.slowStart,
	}, nil
}

func (m *metrics) decision(e observe.Decision) {
	o := e.Outcome.String()
	m.decisions.WithLabelValues(e.Policy, o, e.Source.String()).Inc()
	m.tokens.WithLabelValues(e.Policy, o).Add(float64(e.Tokens))
}

func (m *metrics) breakerChange(e observe.Breaker) {
	for _, s := range []observe.BreakerState{observe.BreakerClosed, observe.BreakerHalfOpen, observe.BreakerOpen} {
		v := 0.0
		if s == e.To {
			v = 1
		}
		m.breaker.WithLabelValues(e.Policy, s.String()).Set(v)
	}
	m.breakerChanges.WithLabelValues(e.Policy, e.To.String()).Inc()
}

func (m *metrics) fallbackChange(e observe.Fallback) {
	g := m.fallback.WithLabelValues(e.Policy)
	if e.Entered {
		g.Set(1)
		m.fallbackEntered.WithLabelValues(e.Policy).Inc()
		return
	}
	g.Set(0)
}

func (m *metrics) lease(e observe.Lease) {
	m.leaseN.WithLabelValues(e.Policy).Inc()
	m.leaseTokens.WithLabelValues(e.Policy).Add(float64(e.Tokens))
	m.leaseDur.WithLabelValues(e.Policy).Observe(e.Latency.Seconds())
}

func (m *metrics) slowStart(e observe.SlowStart) {
	m.slowStarts.WithLabelValues(e.Policy, e.Reason).Inc()
	m.slowStartShare.WithLabelValues(e.Policy).Set(e.Share)
}

func (m *metrics) admission(e observe.Admission) {
	switch {
	case e.Ticket:
		m.admissions.WithLabelValues(e.Policy, "rejoined").Inc()
	case e.Granted:
		m.admissions.WithLabelValues(e.Policy, "granted").Inc()
	default:
		m.admissions.WithLabelValues(e.Policy, "refused").Inc()
		m.admissionWait.WithLabelValues(e.Policy).Observe(e.Wait.Seconds())
	}
}

func (m *metrics) rollout(e observe.Rollout) {
	m.rolloutEvents.WithLabelValues(e.Kind.String()).Inc()
	if e.Kind == observe.RolloutCohortReleased {
		m.mu.Lock()
		if d := e.Released - m.released[e.ID]; d > 0 {
			m.cohorts.Add(float64(d))
		}
		m.released[e.ID] = e.Released
		m.mu.Unlock()
	}
	phase := ""
	switch e.Kind {
	case observe.RolloutStarted, observe.RolloutResumed:
		phase = "running"
	case observe.RolloutPaused:
		phase = "paused"
	case observe.RolloutAborted, observe.RolloutCompleted:
	default:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	setPhase(m.rollouts, m.rolloutPhase, e.ID, phase)
	if phase == "" {
		delete(m.released, e.ID)
	}
}

func (m *metrics) warmup(e observe.Warmup) {
	m.warmupEvents.WithLabelValues(e.Kind.String()).Inc()
	switch e.Kind {
	case observe.WarmupChunkDone:
		m.warmupKeys.WithLabelValues("warmed").Add(float64(e.Keys))
	case observe.WarmupKeyFailed:
		m.warmupKeys.WithLabelValues("failed").Add(float64(e.Keys))
	case observe.WarmupPhase:
		phase := e.Phase
		if phase != "running" && phase != "paused" {
			phase = "" // finished
		}
		m.mu.Lock()
		setPhase(m.warmups, m.warmupPhases, e.ID, phase)
		m.mu.Unlock()
	}
}

// setPhase moves id to phase ("" for none) in g, whose counts by phase
// phases holds. The caller holds m.mu.
func setPhase(g *prom.GaugeVec, phases map[string]string, id, phase string) {
	if was, ok := phases[id]; ok {
		g.WithLabelValues(was).Dec()
	}
	if phase == "" {
		delete(phases, id)
		return
	}
	phases[id] = phase
	g.WithLabelValues(phase).Inc()
}

func (m *metrics) headroom(e observe.Headroom) {
	m.limit.WithLabelValues(e.Origin).Set(e.Limit)
	m.spare.WithLabelValues(e.Origin).Set(e.Spare)
	v := 0.0
	if e.Saturated {
		v = 1
	}
	m.saturated.WithLabelValues(e.Origin).Set(v)
}
