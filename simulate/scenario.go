package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"time"
)

// Limits on scenario sizes: what a laptop-sized run can hold.
const (
	// MaxClients is the most clients a scenario may have.
	MaxClients = 10_000_000
	// MaxNodes is the most app-server nodes a scenario may have.
	MaxNodes = 50
	// MaxDuration is the longest virtual run.
	MaxDuration = 24 * time.Hour
	// MaxPolls bounds clients × duration ÷ poll interval, the number of
	// poll events a run makes, so that no scenario file can ask for a run
	// that would not end.
	MaxPolls = 2e9
	// maxScenarioBytes bounds a scenario file.
	maxScenarioBytes = 1 << 20
)

// Trigger kinds.
const (
	// KindRogueInvalidate: one node tells every client to drop its copy.
	KindRogueInvalidate = "rogue-invalidate"
	// KindReconnectStorm: a share of clients lose their connection at once.
	KindReconnectStorm = "reconnect-storm"
	// KindIncident: the rogue invalidation whose refetch errors make the
	// clients reconnect, as in the incident.
	KindIncident = "incident"
	// KindConfigChange: the limit pacing a content refresh is raised at
	// once (unprotected) or ramped (protected).
	KindConfigChange = "config-change"
)

// ErrInvalidScenario is wrapped by every scenario parsing and validation
// error; the message names the field's path, e.g.
// "scenario.trigger.share: must be in (0,1], got 1.5".
var ErrInvalidScenario = errors.New("simulate: invalid scenario")

// Scenario is one storm to replay: the fleet, its clients and origin, the
// protection settings and the trigger, plus the bounds the runs must meet.
// It is read from JSON (ParseScenario; field names in snake_case, durations
// as Go duration strings such as "90s") or taken from BuiltIn. Zero fields
// take the defaults stated on them (Defaults fills them in); rates and
// capacities are for the scenario's Clients and scale with it (Scale).
type Scenario struct {
	// Name identifies the scenario in reports and file names: 1 to 64 of
	// a-z, 0-9, '-' and '_'. Required.
	Name string `json:"name"`
	// Description is free text for reports.
	Description string `json:"description,omitempty"`
	// Seed seeds the run's random numbers; the same seed gives the same
	// results, byte for byte. 0 means 1.
	Seed uint64 `json:"seed,omitempty"`
	// Duration is the virtual length of each run. Default 30m, at most
	// MaxDuration, and more than Trigger.At.
	Duration Duration `json:"duration,omitempty"`
	// Clients is the number of clients, 1 to MaxClients. Required.
	Clients int `json:"clients"`
	// Nodes is the number of app-server nodes, 1 to MaxNodes. Default 10.
	Nodes int `json:"nodes,omitempty"`

	Client     ClientSpec     `json:"client"`
	Node       NodeSpec       `json:"node"`
	Origin     OriginSpec     `json:"origin"`
	Protection ProtectionSpec `json:"protection"`
	Trigger    Trigger        `json:"trigger"`
	// Bounds are the checks the runs must pass (see Bound).
	Bounds []Bound `json:"bounds,omitempty"`
}

// ClientSpec describes the clients.
type ClientSpec struct {
	// PollInterval is the mean time between a client's polls (page views):
	// polls form a Poisson process. Default 60s, at least 100ms.
	PollInterval Duration `json:"poll_interval,omitempty"`
	// CopyTTL is the mean lifetime of a client's cached copy: each poll
	// finds the copy stale with probability 1-exp(-PollInterval/CopyTTL),
	// and the client refetches. Default 10m, at least PollInterval.
	CopyTTL Duration `json:"copy_ttl,omitempty"`
	// RetryDelay is the naive (unprotected) client's fixed wait before a
	// retry or a reconnect: no growth, no jitter. Default 1s.
	RetryDelay Duration `json:"retry_delay,omitempty"`
	// Reaction spreads a client's reaction to a directive or a drop: it
	// acts after a uniform delay in [0, Reaction). Default 1s.
	Reaction Duration `json:"reaction,omitempty"`
	// DisconnectOnError makes a client treat a failed fetch as a broken
	// connection: it disconnects and reconnects (the incident's clients).
	DisconnectOnError bool `json:"disconnect_on_error,omitempty"`
	// Backoff is the protected client's reconnect policy: "slot" (ask the
	// node's admission and come back at the slot it gives, the default) or
	// "jitter" (full-jitter backoff, no admission).
	Backoff string `json:"backoff,omitempty"`
	// BackoffBase and BackoffCap shape the protected client's full-jitter
	// backoff (limiter.Backoff). Defaults 1s and 2m.
	BackoffBase Duration `json:"backoff_base,omitempty"`
	BackoffCap  Duration `json:"backoff_cap,omitempty"`
	// RetryTokens and RetryRatio shape the protected client's retry budget
	// (limiter.RetryBudget). Defaults 10 and 0.1.
	RetryTokens int     `json:"retry_tokens,omitempty"`
	RetryRatio  float64 `json:"retry_ratio,omitempty"`
}

// NodeSpec describes the app-server nodes.
type NodeSpec struct {
	// CacheHit is the share of fetches a warm node cache serves, in [0, 1).
	// Default 0.8. A fetch that misses goes to the origin.
	CacheHit float64 `json:"cache_hit,omitempty"`
	// Latency is the node's round trip for an answer it has. Default 5ms.
	Latency Duration `json:"latency,omitempty"`
	// WarmKeys is the number of origin fills a restarted (cold) node
	// needs to be warm again: its hit rate grows linearly with fills.
	// Default clients ÷ nodes ÷ 20, at least 1; scales with clients.
	WarmKeys int `json:"warm_keys,omitempty"`
}

// OriginSpec describes the origin behind the node caches.
type OriginSpec struct {
	// Capacity is the origin's throughput in requests per second (> 0).
	// Required.
	Capacity float64 `json:"capacity"`
	// Latency is the origin's base latency, added to the queueing delay.
	// Default 20ms.
	Latency Duration `json:"latency,omitempty"`
	// Timeout is how long a caller waits for the origin: a request whose
	// latency would exceed it becomes an error at Timeout, but the origin
	// still does its work (no deadline propagation). Default 30s.
	Timeout Duration `json:"timeout,omitempty"`
	// QueueLimit rejects requests (a fast error) while this many are
	// queued. 0 (the default) means unbounded.
	QueueLimit int `json:"queue_limit,omitempty"`
}

// ProtectionSpec sets the herdcap components of the protected run.
type ProtectionSpec struct {
	// OriginBudget is the fleet-wide budget of origin calls per second
	// (a limiter budget every node takes from before calling the origin).
	// Default 0.8 × Origin.Capacity.
	OriginBudget float64 `json:"origin_budget,omitempty"`
	// RolloutRate is the pace of an invalidation rollout, in clients per
	// second across the fleet. Default OriginBudget.
	RolloutRate float64 `json:"rollout_rate,omitempty"`
	// Cohorts is the number of cohorts of a rollout. Default 100.
	Cohorts int `json:"cohorts,omitempty"`
	// MinDuration is the guard's least duration of a broad rollout.
	// Default 1m.
	MinDuration Duration `json:"min_duration,omitempty"`
	// AdmissionRate is the fleet-wide budget of new sessions per second.
	// Default RolloutRate.
	AdmissionRate float64 `json:"admission_rate,omitempty"`
	// Ramp is the window over which a changed limit moves to its new
	// value. Default 10m.
	Ramp Duration `json:"ramp,omitempty"`
	// Tick is how often nodes advance rollouts and dispatch paced work.
	// Default 1s, between 10ms and 1m.
	Tick Duration `json:"tick,omitempty"`
}

// Trigger is the event each run replays.
type Trigger struct {
	// Kind is one of KindRogueInvalidate, KindReconnectStorm, KindIncident
	// and KindConfigChange. Required.
	Kind string `json:"kind"`
	// At is when the trigger fires. Default 2m.
	At Duration `json:"at,omitempty"`
	// Share is the share of clients affected, in (0, 1]. Default 1.
	// Invalidations reach every client, so they need 1.
	Share float64 `json:"share,omitempty"`
	// Node is the rogue (invalidations) or restarted (reconnect storm with
	// Cause "restart") node, 0 to Nodes-1.
	Node int `json:"node,omitempty"`
	// Cause is the reconnect storm's cause: "blip" (Share of all clients
	// drop; the default) or "restart" (node Node restarts: its clients drop
	// and its cache comes back cold).
	Cause string `json:"cause,omitempty"`
	// Downtime is how long a restarted node stays down. Default 10s.
	Downtime Duration `json:"downtime,omitempty"`
	// Limit is the config change's starting refresh limit, in clients per
	// second across the fleet (> 0); required for KindConfigChange.
	Limit float64 `json:"limit,omitempty"`
	// Factor is what the config change multiplies the limit by, in
	// (1, 10000]. Default 100.
	Factor float64 `json:"factor,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// LoadScenario reads and validates the scenario file at path.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseScenario(b)
}

// ParseScenario reads a scenario from JSON, fills in the defaults and
// validates it. Unknown fields, trailing data, wrong types and values out
// of range are errors wrapping ErrInvalidScenario that name the field's
// path; ParseScenario never panics.
func ParseScenario(data []byte) (*Scenario, error) {
	if len(data) > maxScenarioBytes {
		return nil, fmt.Errorf("%w: scenario: file is %d bytes, more than %d", ErrInvalidScenario, len(data), maxScenarioBytes)
	}
	if err := checkUnknownFields(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: scenario: trailing data after the JSON object", ErrInvalidScenario)
	}
	sc.Defaults()
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := "scenario"
		if te.Field != "" {
			path += "." + te.Field
		}
		return fmt.Errorf("%w: %s: want %v, got JSON %s", ErrInvalidScenario, path, te.Type, te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: scenario: bad JSON: unexpected end of input", ErrInvalidScenario)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: scenario: bad JSON at byte %d: %v", ErrInvalidScenario, se.Offset, se)
	}
	return fmt.Errorf("%w: scenario: %v", ErrInvalidScenario, err)
}

// Defaults fills every zero field with its default. It is idempotent.
func (s *Scenario) Defaults() {
	setDur := func(d *Duration, def time.Duration) {
		if *d == 0 {
			*d = Duration(def)
		}
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	setDur(&s.Duration, 30*time.Minute)
	if s.Nodes == 0 {
		s.Nodes = 10
	}
	c := &s.Client
	setDur(&c.PollInterval, time.Minute)
	setDur(&c.CopyTTL, 10*time.Minute)
	setDur(&c.RetryDelay, time.Second)
	setDur(&c.Reaction, time.Second)
	if c.Backoff == "" {
		c.Backoff = "slot"
	}
	setDur(&c.BackoffBase, time.Second)
	setDur(&c.BackoffCap, 2*time.Minute)
	if c.RetryTokens == 0 {
		c.RetryTokens = 10
	}
	if c.RetryRatio == 0 {
		c.RetryRatio = 0.1
	}
	n := &s.Node
	if n.CacheHit == 0 {
		n.CacheHit = 0.8
	}
	setDur(&n.Latency, 5*time.Millisecond)
	if n.WarmKeys == 0 && s.Clients > 0 && s.Nodes > 0 {
		n.WarmKeys = max(1, s.Clients/s.Nodes/20)
	}
	o := &s.Origin
	setDur(&o.Latency, 20*time.Millisecond)
	setDur(&o.Timeout, 30*time.Second)
	p := &s.Protection
	if p.OriginBudget == 0 {
		p.OriginBudget = 0.8 * o.Capacity
	}
	if p.RolloutRate == 0 {
		p.RolloutRate = p.OriginBudget
	}
	if p.Cohorts == 0 {
		p.Cohorts = 100
	}
	setDur(&p.MinDuration, time.Minute)
	if p.AdmissionRate == 0 {
		p.AdmissionRate = p.RolloutRate
	}
	setDur(&p.Ramp, 10*time.Minute)
	setDur(&p.Tick, time.Second)
	t := &s.Trigger
	setDur(&t.At, 2*time.Minute)
	if t.Share == 0 {
		t.Share = 1
	}
	if t.Cause == "" && t.Kind == KindReconnectStorm {
		t.Cause = "blip"
	}
	setDur(&t.Downtime, 10*time.Second)
	if t.Factor == 0 {
		t.Factor = 100
	}
}

// fieldErr returns a validation error for the field at path.
func fieldErr(path, format string, args ...any) error {
	return fmt.Errorf("%w: scenario.%s: %s", ErrInvalidScenario, path, fmt.Sprintf(format, args...))
}

func checkRate(path string, v float64, allowZero bool) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fieldErr(path, "must be finite, got %v", v)
	case v < 0:
		return fieldErr(path, "must not be negative, got %v", v)
	case v == 0 && !allowZero:
		return fieldErr(path, "must be > 0, got 0")
	case v > 1e12:
		return fieldErr(path, "must be at most 1e12, got %v", v)
	}
	return nil
}

func checkDur(path string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return fieldErr(path, "must be between %v and %v, got %v", lo, hi, d.D())
	}
	return nil
}

// Validate checks every field, after Defaults; the error wraps
// ErrInvalidScenario and names the first bad field's path.
func (s *Scenario) Validate() error {
	if !nameRE.MatchString(s.Name) {
		return fieldErr("name", "must be 1 to 64 of a-z, 0-9, '-' and '_', got %q", truncate(s.Name, 70))
	}
	if s.Clients < 1 || s.Clients > MaxClients {
		return fieldErr("clients", "must be between 1 and %d, got %d", MaxClients, s.Clients)
	}
	if s.Nodes < 1 || s.Nodes > MaxNodes {
		return fieldErr("nodes", "must be between 1 and %d, got %d", MaxNodes, s.Nodes)
	}
	if err := checkDur("duration", s.Duration, time.Minute, MaxDuration); err != nil {
		return err
	}
	c := s.Client
	checks := []error{
		checkDur("client.poll_interval", c.PollInterval, 100*time.Millisecond, time.Hour),
		checkDur("client.copy_ttl", c.CopyTTL, c.PollInterval.D(), 1000*time.Hour),
		checkDur("client.retry_delay", c.RetryDelay, time.Millisecond, time.Hour),
		checkDur("client.reaction", c.Reaction, 0, time.Hour),
		checkDur("client.backoff_base", c.BackoffBase, time.Millisecond, time.Hour),
		checkDur("client.backoff_cap", c.BackoffCap, c.BackoffBase.D(), 24*time.Hour),
	}
	if c.Backoff != "slot" && c.Backoff != "jitter" {
		checks = append(checks, fieldErr("client.backoff", "must be \"slot\" or \"jitter\", got %q", truncate(c.Backoff, 40)))
	}
	if c.RetryTokens < 1 || c.RetryTokens > 1000 {
		checks = append(checks, fieldErr("client.retry_tokens", "must be between 1 and 1000, got %d", c.RetryTokens))
	}
	if math.IsNaN(c.RetryRatio) || c.RetryRatio < 1e-6 || c.RetryRatio > float64(c.RetryTokens) {
		checks = append(checks, fieldErr("client.retry_ratio", "must be in [0.000001, retry_tokens], got %v", c.RetryRatio))
	}
	n := s.Node
	if math.IsNaN(n.CacheHit) || n.CacheHit < 0 || n.CacheHit >= 1 {
		checks = append(checks, fieldErr("node.cache_hit", "must be in [0,1), got %v", n.CacheHit))
	}
	checks = append(checks, checkDur("node.latency", n.Latency, 0, time.Minute))
	if n.WarmKeys < 1 || n.WarmKeys > MaxClients {
		checks = append(checks, fieldErr("node.warm_keys", "must be between 1 and %d, got %d", MaxClients, n.WarmKeys))
	}
	o := s.Origin
	checks = append(checks,
		checkRate("origin.capacity", o.Capacity, false),
		checkDur("origin.latency", o.Latency, 0, time.Minute),
		checkDur("origin.timeout", o.Timeout, time.Millisecond, time.Hour))
	if o.QueueLimit < 0 || o.QueueLimit > 1e9 {
		checks = append(checks, fieldErr("origin.queue_limit", "must be between 0 (unbounded) and 1e9, got %d", o.QueueLimit))
	}
	p := s.Protection
	checks = append(checks,
		checkRate("protection.origin_budget", p.OriginBudget, false),
		checkRate("protection.rollout_rate", p.RolloutRate, false),
		checkRate("protection.admission_rate", p.AdmissionRate, false),
		checkDur("protection.min_duration", p.MinDuration, time.Second, MaxDuration),
		checkDur("protection.ramp", p.Ramp, 0, MaxDuration),
		checkDur("protection.tick", p.Tick, 10*time.Millisecond, time.Minute))
	if p.Cohorts < 1 || p.Cohorts > 1<<20 {
		checks = append(checks, fieldErr("protection.cohorts", "must be between 1 and %d, got %d", 1<<20, p.Cohorts))
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if err := s.validateTrigger(); err != nil {
		return err
	}
	if polls := float64(s.Clients) * s.Duration.Seconds() / s.Client.PollInterval.Seconds(); polls > MaxPolls {
		return fieldErr("clients", "clients × duration ÷ client.poll_interval is %.3g polls, more than %.0g: shorten the run or poll less often", polls, float64(MaxPolls))
	}
	for i, b := range s.Bounds {
		if err := b.validate(fmt.Sprintf("bounds[%d]", i), 0); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scenario) validateTrigger() error {
	t := s.Trigger
	switch t.Kind {
	case KindRogueInvalidate, KindIncident, KindReconnectStorm, KindConfigChange:
	default:
		return fieldErr("trigger.kind", "must be one of %q, %q, %q, %q, got %q",
			KindRogueInvalidate, KindReconnectStorm, KindIncident, KindConfigChange, truncate(t.Kind, 40))
	}
	if t.At <= 0 || t.At >= s.Duration {
		return fieldErr("trigger.at", "must be in (0, duration = %v), got %v", s.Duration.D(), t.At.D())
	}
	if math.IsNaN(t.Share) || t.Share <= 0 || t.Share > 1 {
		return fieldErr("trigger.share", "must be in (0,1], got %v", t.Share)
	}
	if (t.Kind == KindRogueInvalidate || t.Kind == KindIncident) && t.Share != 1 {
		return fieldErr("trigger.share", "must be 1 for %s (an invalidation reaches every client), got %v", t.Kind, t.Share)
	}
	if t.Node < 0 || t.Node >= s.Nodes {
		return fieldErr("trigger.node", "must be between 0 and nodes-1 = %d, got %d", s.Nodes-1, t.Node)
	}
	if t.Kind == KindReconnectStorm && t.Cause != "blip" && t.Cause != "restart" {
		return fieldErr("trigger.cause", "must be \"blip\" or \"restart\", got %q", truncate(t.Cause, 40))
	}
	if t.Kind != KindReconnectStorm && t.Cause != "" {
		return fieldErr("trigger.cause", "applies to %s only, got %q for %s", KindReconnectStorm, truncate(t.Cause, 40), t.Kind)
	}
	if err := checkDur("trigger.downtime", t.Downtime, 0, time.Hour); err != nil {
		return err
	}
	if t.Kind == KindConfigChange {
		if err := checkRate("trigger.limit", t.Limit, false); err != nil {
			return err
		}
	} else if err := checkRate("trigger.limit", t.Limit, true); err != nil {
		return err
	}
	if math.IsNaN(t.Factor) || t.Factor <= 1 || t.Factor > 10000 {
		return fieldErr("trigger.factor", "must be in (1, 10000], got %v", t.Factor)
	}
	return nil
}

// Scale returns a copy of s resized to clients, with every rate and
// capacity (origin capacity and queue limit, node warm keys, the
// protection budgets and the config change's limit) multiplied by
// clients ÷ s.Clients, so that the dynamics (utilisation, waves, time to
// converge) stay those of the original. The copy is validated.
func (s *Scenario) Scale(clients int) (*Scenario, error) {
	c := *s
	c.Bounds = append([]Bound(nil), s.Bounds...)
	if clients == s.Clients {
		return &c, c.Validate()
	}
	if clients < 1 || clients > MaxClients {
		return nil, fieldErr("clients", "must be between 1 and %d, got %d", MaxClients, clients)
	}
	f := float64(clients) / float64(s.Clients)
	c.Clients = clients
	c.Origin.Capacity *= f
	c.Origin.QueueLimit = int(math.Ceil(float64(c.Origin.QueueLimit) * f))
	c.Node.WarmKeys = max(1, int(math.Round(float64(c.Node.WarmKeys)*f)))
	c.Protection.OriginBudget *= f
	c.Protection.RolloutRate *= f
	c.Protection.AdmissionRate *= f
	c.Trigger.Limit *= f
	return &c, c.Validate()
}
