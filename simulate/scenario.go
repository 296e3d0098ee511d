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
	"strconv"
	"strings"
	"time"

	"github.com/herdcap/herdcap/limiter"
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
	// MinRate and MaxRate bound every rate and capacity of a scenario, per
	// second (the origin's capacity, the protection's budgets, the config
	// change's limit before and after its factor): what the limiter takes,
	// with room to Scale a scenario down by 1000.
	MinRate = 1e-3
	MaxRate = 1e9
	// MaxCacheEntries bounds node.keys × nodes: the entries of the node
	// caches, 8 bytes each.
	MaxCacheEntries = 50_000_000
	// maxScenarioBytes bounds a scenario file.
	maxScenarioBytes = 1 << 20
	// guardMinCohorts is the least number of cohorts of a protected
	// rollout: the fewest invalidate's guard allows a broad rollout by
	// default (Guard.MinCohorts 0: 10), since every scenario's rollout is
	// guarded.
	guardMinCohorts = 10
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
	// KindContentPush: new content makes every node's cache out of date
	// at once (unprotected: every node refetches what its clients ask
	// for; protected: the nodes serve stale while one warm fetches each
	// key once for the fleet, hottest first, in the origin's background
	// lane).
	KindContentPush = "content-push"
	// KindColdNode: node Trigger.Node is replaced by one with an empty
	// cache (protected: it takes a growing share of its traffic, as
	// warmup/slowstart decides, while a warm fills it hottest first).
	KindColdNode = "cold-node"
	// KindHotKey: the most popular key expires on every node at the same
	// moment (protected: a fleet fill lease, one origin fetch per key per
	// lease, the others served stale).
	KindHotKey = "hot-key"
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
	// Duration is the virtual length of each run: whole seconds, default
	// 30m, at least 1m, at most MaxDuration, and more than Trigger.At.
	Duration Duration `json:"duration,omitempty"`
	// Clients is the number of clients, 1 to MaxClients. Required.
	Clients int `json:"clients"`
	// Nodes is the number of app-server nodes, 1 to MaxNodes. Default 10.
	Nodes int `json:"nodes,omitempty"`

	// Client describes the clients.
	Client ClientSpec `json:"client"`
	// Node describes the app-server nodes and their caches.
	Node NodeSpec `json:"node"`
	// Origin describes the origin behind the node caches. Its capacity is
	// required.
	Origin OriginSpec `json:"origin"`
	// Protection sets the herdcap components of the protected run.
	Protection ProtectionSpec `json:"protection"`
	// Trigger is the event each run replays. Its kind is required.
	Trigger Trigger `json:"trigger"`
	// Redis models the store the protected run coordinates through: the
	// latency of its calls and its outages.
	Redis RedisSpec `json:"redis"`
	// Bounds are the checks the runs must pass (see Bound).
	Bounds []Bound `json:"bounds,omitempty"`
}

// Client policies: how a client waits before it retries a failed request
// or reconnects (ClientSpec.Backoff and ClientSpec.UnprotectedBackoff).
const (
	// PolicyNone is the naive client of the incident: a fixed
	// ClientSpec.RetryDelay before every retry, a reconnect as soon as it
	// notices a drop, no retry budget, and a server's hint ignored.
	PolicyNone = "none"
	// PolicyJitter is herdcap's client without the server's help:
	// full-jitter backoff (retry.Backoff) before every retry and every
	// reconnect, within a retry budget (retry.Budget); a server's hint is
	// ignored.
	PolicyJitter = "jitter"
	// PolicySlot is herdcap's client that honours the server: like
	// PolicyJitter, but when the server says when to come back (an
	// admission slot, a Retry-After) it comes back then
	// (retry.Backoff.DelayHint). It needs a server that gives hints, so
	// it applies to the protected run only.
	PolicySlot = "slot"
)

// ClientSpec describes the clients.
type ClientSpec struct {
	// PollInterval is the mean time between a client's polls (page views):
	// polls form a Poisson process. Default 60s, 100ms to 1h.
	PollInterval Duration `json:"poll_interval,omitempty"`
	// CopyTTL is the mean lifetime of a client's cached copy: each poll
	// finds the copy stale with probability 1-exp(-PollInterval/CopyTTL),
	// and the client refetches. Default 10m, PollInterval to 1000h.
	CopyTTL Duration `json:"copy_ttl,omitempty"`
	// RetryDelay is the naive client's (PolicyNone) fixed wait before a
	// retry or a reconnect: no growth, no jitter. Default 1s, 1ms to 1h.
	RetryDelay Duration `json:"retry_delay,omitempty"`
	// Reaction spreads a client's reaction to a broadcast directive or a
	// drop: it acts after a uniform delay in [0, Reaction). Default 1s, at
	// most 1h.
	Reaction Duration `json:"reaction,omitempty"`
	// DisconnectOnError makes a client treat a failed fetch as a broken
	// connection: it disconnects and reconnects (the incident's clients).
	// A herdcap client (PolicyJitter, PolicySlot) does not treat a
	// refusal that says when to come back as a broken connection; the
	// naive client does.
	DisconnectOnError bool `json:"disconnect_on_error,omitempty"`
	// ReconnectOnInvalidate makes applying an invalidation reload the
	// client: it drops its connection and reconnects at once (a new
	// session), then refetches, as the incident's clients did. Applying a
	// notice it is given while reconnecting needs no second reload.
	ReconnectOnInvalidate bool `json:"reconnect_on_invalidate,omitempty"`
	// Backoff is the protected run's client policy: PolicySlot (the
	// default), PolicyJitter or PolicyNone.
	Backoff string `json:"backoff,omitempty"`
	// UnprotectedBackoff is the unprotected run's client policy:
	// PolicyNone (the default) or PolicyJitter (an unprotected server
	// gives no slots, so PolicySlot does not apply).
	UnprotectedBackoff string `json:"unprotected_backoff,omitempty"`
	// BackoffBase is the first full-jitter window of retry.Backoff
	// (PolicyJitter, PolicySlot). Default 100ms (retry.Backoff's, which
	// the transports ship), 1ms to 1h.
	BackoffBase Duration `json:"backoff_base,omitempty"`
	// BackoffCap is the largest full-jitter window. Default 10s
	// (retry.Backoff's), BackoffBase to 24h.
	BackoffCap Duration `json:"backoff_cap,omitempty"`
	// HintJitter caps the jitter a PolicySlot client adds to a server's
	// hint (retry.Backoff.HintJitterMax: 10% of the hint, at most this).
	// Default 1s (retry.Backoff's default), 0 to 1m.
	HintJitter Duration `json:"hint_jitter,omitempty"`
	// RetryTokens is the size of a herdcap client's retry budget
	// (retry.Budget). Default 10, 1 to 1000.
	RetryTokens int `json:"retry_tokens,omitempty"`
	// RetryRatio is the tokens a success gives back to the retry budget.
	// Default 0.1, 0.000001 to RetryTokens.
	RetryRatio float64 `json:"retry_ratio,omitempty"`
}

// NodeSpec describes the app-server nodes and their caches.
type NodeSpec struct {
	// Keys is the number of distinct page-data keys. Client i's page data
	// is one key, the same on every visit; clients sharing a key share
	// node cache entries. Default clients ÷ 1000 (at least 1); scales with
	// clients. Keys × nodes is at most MaxCacheEntries.
	Keys int `json:"keys,omitempty"`
	// CacheTTL is how long a node keeps a key after an origin fetch filled
	// it; 0 means no node cache (every fetch goes to the origin). An entry
	// filled before an invalidation (or a content push) cannot serve a
	// client that has applied it, so an invalidation empties the caches for
	// the clients it reaches, and their refetches refill them. Default 30s,
	// at most 24h.
	CacheTTL Duration `json:"cache_ttl,omitempty"`
	// Latency is the node's round trip for an answer it has. Default 5ms,
	// at most 1m.
	Latency Duration `json:"latency,omitempty"`
	// AcceptRate is how many connections one node accepts per second: a
	// connect attempt (the TCP and TLS handshakes and the session's setup
	// on the node, before admission answers) takes 1 ÷ AcceptRate of the
	// node's accept work, served first-in first-out. Default clients ÷
	// nodes ÷ 10 s: a node takes its whole population in ten seconds,
	// 10,000 connections a second for 100,000 clients: a node of 8 cores
	// spending some 0.8 ms of CPU on each (a TLS 1.3 full handshake with
	// an ECDSA certificate in Go's crypto/tls takes about 0.3 ms, the
	// session's setup on the node the rest; with an RSA certificate the
	// handshake alone takes over 1 ms). Slower nodes throttle a naive
	// fleet harder, but a herd's first attempts then time out in the
	// protected run too (a node taking its population in 30 s: 3% to 8%
	// of the built-in reconnect storms' requests fail; in 60 s, 14% to
	// 18%). MinRate to MaxRate; scales with clients.
	AcceptRate float64 `json:"accept_rate,omitempty"`
	// AcceptBacklog bounds a node's accept queue in time (the kernel's
	// accept backlog, in seconds of AcceptRate): an attempt that would wait
	// longer is not answered at all, and its client's connect fails at
	// ConnectTimeout (an error, not a refusal). Default 1s, 1ms to 1m.
	AcceptBacklog Duration `json:"accept_backlog,omitempty"`
	// ConnectTimeout is how long a client's connect waits for a node that
	// does not answer before it fails; the client then retries after its
	// usual delay. Default 30s: the dial timeout of Go's
	// http.DefaultTransport, which httpmw.Transport uses unless given
	// another (OkHttp's is 10 s; browsers leave it to the kernel, which
	// gives up after about two minutes), 1ms to 10m. Within it the client's kernel retransmits a SYN
	// the node dropped after 1 s, then 2, 4, 8, 16 and 32 s (Linux's
	// defaults), and a retransmit that finds room in the backlog connects.
	ConnectTimeout Duration `json:"connect_timeout,omitempty"`
	// Zipf skews the keys' popularity: 0 (the default) gives each client
	// a key by a fixed hash of its index, every key about as popular as
	// any other; s > 0 draws each client's key from a Zipf law of
	// exponent s (key k, from 0, chosen with a weight 1 ÷ (k+1)^s), with
	// the run's seed, so that a few keys carry most of the traffic and
	// "hottest first" means something. 0 to 4.
	Zipf float64 `json:"zipf,omitempty"`
	// HealthCheck is how long the load balancer in front of the nodes
	// takes to notice that a node went down, or came back: its health
	// check's interval times the failures (or successes) it needs in a
	// row (HAProxy's defaults, 2 s × 3 down and × 2 up, take 6 and 4 s;
	// an AWS load balancer's 10 s to 5 minutes). Until it notices a
	// failure, connections still go to the dead node and fail at once;
	// then the node's clients reconnect to the other nodes (see the
	// package doc), until it notices the node is back. Default 5s, 1ms
	// to 1h.
	HealthCheck Duration `json:"health_check,omitempty"`
}

// OriginSpec describes the origin behind the node caches. Its defaults are
// the realistic origin (see the package doc): a queue bounded to 5 s of
// capacity, deadlines that propagate, service times with a tail.
type OriginSpec struct {
	// Capacity is the origin's throughput in requests per second, MinRate
	// to MaxRate. Required.
	Capacity float64 `json:"capacity"`
	// Latency is the origin's base latency, added to the queueing delay
	// and the service time; it takes no capacity. Default 20ms, at most
	// 1m.
	Latency Duration `json:"latency,omitempty"`
	// Timeout is how long a caller waits for the origin: a request that
	// would take longer fails at Timeout. Unless FinishAbandoned, the
	// origin drops a queued request whose caller has gone and stops one it
	// serves at the deadline. Default 10s, 1ms to 1h.
	Timeout Duration `json:"timeout,omitempty"`
	// MaxQueue bounds the queue in time: a request that would wait longer
	// for a worker is rejected at once (a fast error that costs nothing).
	// Default 5s, 1ms to 1h; see UnboundedQueue.
	MaxQueue Duration `json:"max_queue,omitempty"`
	// UnboundedQueue lifts MaxQueue: the queue grows without limit (the
	// lenient origin of the first simulator).
	UnboundedQueue bool `json:"unbounded_queue,omitempty"`
	// FinishAbandoned turns deadline propagation off: the origin does every
	// request it queued to the end, also those whose caller has gone (the
	// lenient origin of the first simulator).
	FinishAbandoned bool `json:"finish_abandoned,omitempty"`
	// Concurrency is the number of requests the origin serves at once (its
	// workers), 1 to 10,000; each serves Capacity ÷ Concurrency requests a
	// second on average. Default 1. Scale multiplies it (at least 1), so
	// at small sizes each request takes longer.
	Concurrency int `json:"concurrency,omitempty"`
	// ServiceCV is the coefficient of variation of a request's service
	// time, drawn from a log-normal distribution of mean Concurrency ÷
	// Capacity: 1 (the default) gives a p99 about 5 × the mean; 0 a fixed
	// time. 0 to 10; absent means the default.
	ServiceCV *float64 `json:"service_cv,omitempty"`
	// Degrade makes capacity degrade under overload: at a full queue
	// (MaxQueue, or Timeout with UnboundedQueue) a request's service takes
	// 1 + Degrade times as long, in proportion below that (contention,
	// thrashing). Default 0 (none), at most 10.
	Degrade float64 `json:"degrade,omitempty"`
	// Changes are capacity changes during the run, in both runs alike: at
	// At the capacity becomes Factor × Capacity, for For (0: to the end).
	// At most 16, in time order, not overlapping.
	Changes []CapacityChange `json:"changes,omitempty"`
}

// CapacityChange is a change of the origin's capacity during a run, such
// as a database failover ({"at": "3m", "factor": 0.5, "for": "2m"}).
type CapacityChange struct {
	// At is when the change starts, in (0, duration).
	At Duration `json:"at"`
	// Factor multiplies Origin.Capacity while the change lasts, in
	// [0.001, 100].
	Factor float64 `json:"factor"`
	// For is how long the change lasts; 0 means to the end of the run.
	For Duration `json:"for,omitempty"`
}

// serviceCV is the service times' coefficient of variation, with its
// default.
func (o OriginSpec) serviceCV() float64 {
	if o.ServiceCV == nil {
		return 1
	}
	return *o.ServiceCV
}

// ProtectionSpec sets the herdcap components of the protected run. Every
// rate is MinRate to MaxRate per second.
type ProtectionSpec struct {
	// OriginBudget is the fleet-wide budget of origin calls per second
	// (a limiter budget every node takes from before calling the origin).
	// Default 0.8 × Origin.Capacity.
	OriginBudget float64 `json:"origin_budget,omitempty"`
	// RolloutRate is the pace of an invalidation rollout, in clients per
	// second across the fleet. Default OriginBudget.
	RolloutRate float64 `json:"rollout_rate,omitempty"`
	// PushBudget is the fleet-wide budget of pushed notices per second
	// that every node's invalidate.Pusher draws on (PushConfig.Budget).
	// Default 1.02 × RolloutRate: a little above the release pace, so that
	// pushes keep up with cohorts of uneven size.
	PushBudget float64 `json:"push_budget,omitempty"`
	// Cohorts is the number of cohorts of a rollout, 10 (the least the
	// guard allows a broad rollout by default, invalidate.Guard.MinCohorts)
	// to limiter.MaxCohorts. Default 100.
	Cohorts int `json:"cohorts,omitempty"`
	// MinDuration is the guard's least duration of a broad rollout.
	// Default 1m, 1s to MaxDuration.
	MinDuration Duration `json:"min_duration,omitempty"`
	// AdmissionRate is the fleet-wide budget of new sessions per second
	// (admission.Gate). Default RolloutRate.
	AdmissionRate float64 `json:"admission_rate,omitempty"`
	// AdmissionHorizon is how far ahead admission books slots
	// (admission.Config.Horizon): what an operator sets, sized to the
	// largest herd that should come back flat (sessions at peak ÷
	// admission rate), not the fleet's exact size, which no fleet knows.
	// A herd beyond it is deferred and asks again. Default 10m, 1s to 24h.
	AdmissionHorizon Duration `json:"admission_horizon,omitempty"`
	// Ramp is the window over which a changed limit moves to its new
	// value. Default 10m, at most MaxDuration.
	Ramp Duration `json:"ramp,omitempty"`
	// Tick is how often the nodes advance rollouts (taking turns: one
	// advance per tick across the fleet; invalidate.Config.AdvanceInterval)
	// and dispatch paced work. Default 1s, 10ms to 1m.
	Tick Duration `json:"tick,omitempty"`
	// PushInterval is how often each node runs its invalidate.Pusher
	// during a rollout; the push budget's burst is one interval of it, and
	// the nodes' Due cache lives half of it, so that a release is pushed
	// within one interval. Default 40ms (at most Tick): a burst of 4% of a
	// second's pushes plus one, within the 5% of a one-second peak window
	// at scale (see Result.ChangedOverBudget). 10ms to Tick.
	PushInterval Duration `json:"push_interval,omitempty"`
	// Headroom, when set, paces the protected run by the origin's
	// measured headroom (limiter/headroom): one controller for the fleet
	// adapts the origin guard's limit between its floor and ceiling, and
	// rollouts and admission take their pace from its spare capacity,
	// capped by RolloutRate and AdmissionRate. OriginBudget, RolloutRate,
	// AdmissionRate and PushBudget then become caps, and may exceed the
	// origin's capacity (the misconfigured case headroom must survive).
	// Nil: fixed budgets.
	Headroom *HeadroomSpec `json:"headroom,omitempty"`
	// CallsPerClient is how many origin calls one told client causes,
	// which turns the headroom's spare calls per second into a rollout's
	// clients per second (invalidate.Config.CallsPerClient). Default what
	// the model makes: 1 (the refetch), plus 1 (the new session) with
	// client.reconnect_on_invalidate. 1 to 100. It paces rollouts only
	// with Headroom (admission counts 1 call per session).
	CallsPerClient float64 `json:"calls_per_client,omitempty"`
	// WarmWorkers is, for content-push and cold-node, the keys each
	// warming node fetches at once (warmup.Config.Workers). Default 4
	// (warmup's), 1 to 1024; ignored by the other triggers (a warning).
	WarmWorkers int `json:"warm_workers,omitempty"`
	// WarmChunk is, for content-push and cold-node, the keys per chunk,
	// the unit the warming nodes claim (warmup.Config.ChunkSize): chunks
	// are claimed in order, hottest first, and each worker fetches its
	// chunk's keys in order, so the fleet works on nodes × workers chunks
	// at once. Default 1000 (warmup's), 1 to 100,000; ignored by the
	// other triggers (a warning).
	WarmChunk int `json:"warm_chunk,omitempty"`
	// FillLease is, for hot-key, the TTL of the fleet's fill lease per key
	// (fill.SharedConfig.LeaseTTL): at most one origin fetch per key per
	// lease across the fleet. Default 10s (fill's FillTimeout, which the
	// lease defaults to), 1ms to 1h; ignored by the other triggers (a
	// warning).
	FillLease Duration `json:"fill_lease,omitempty"`
	// SlowStart is, for cold-node, the window over which the replaced node
	// takes a growing share of its traffic (slowstart.Config.Window, from
	// 10% to all of it, linear in time). Default 1m (slowstart's), 1s to
	// 1h; ignored by the other triggers (a warning).
	SlowStart Duration `json:"slow_start,omitempty"`
}

// HeadroomSpec bounds the origin's adaptive limit (headroom.Bounds), in
// calls per second across the fleet. Its defaults need no knowledge of
// the origin's capacity, which an operator rarely knows: only the origin
// budget they would have set.
type HeadroomSpec struct {
	// Ceiling is the most the limit may reach. Default 2 ×
	// Protection.OriginBudget.
	Ceiling float64 `json:"ceiling,omitempty"`
	// Floor is the least the limit may fall to, at most Ceiling and at
	// most Origin.Capacity (a floor above capacity would hold the origin
	// overloaded). Default 1% of Ceiling.
	Floor float64 `json:"floor,omitempty"`
	// Initial is the limit the controller starts at, in [Floor, Ceiling].
	// Default Protection.OriginBudget, within [Floor, Ceiling].
	Initial float64 `json:"initial,omitempty"`
	// Interval is the control interval (headroom.Config.Interval).
	// Default 1s, 100ms to 1m.
	Interval Duration `json:"interval,omitempty"`
	// Tolerance says when the origin's latency means it is saturated:
	// a mean success latency above (1 + Tolerance) × the least seen
	// (headroom.Bounds.Tolerance). Set it above the origin's own spread:
	// an origin whose mean latency at light load is twice its least reads
	// as saturated under a tolerance below 1. Default 0.5 (the library's),
	// above 0 to 100.
	Tolerance float64 `json:"tolerance,omitempty"`
}

// Trigger is the event each run replays.
type Trigger struct {
	// Kind is one of KindRogueInvalidate, KindReconnectStorm, KindIncident
	// and KindConfigChange. Required.
	Kind string `json:"kind"`
	// At is when the trigger fires. Default 2m; in (0, Duration).
	At Duration `json:"at,omitempty"`
	// Share is the share of clients affected, in (0, 1]. Default 1.
	// Invalidations reach every client, so they need 1.
	Share float64 `json:"share,omitempty"`
	// Node is the rogue (invalidations), restarted (reconnect storm with
	// Cause "restart") or replaced (cold-node) node, 0 to Nodes-1.
	Node int `json:"node,omitempty"`
	// Cause is the reconnect storm's cause: "blip" (Share of all clients
	// drop; the default), "restart" (node Node restarts: its clients drop
	// and its cache comes back empty) or "cold-start" (every node restarts
	// at once, a deploy or a region's power cut: every client drops, every
	// cache comes back empty; Share must be 1).
	Cause string `json:"cause,omitempty"`
	// Downtime is how long a restarted node stays down. Default 10s, at
	// most 1h.
	Downtime Duration `json:"downtime,omitempty"`
	// Limit is the config change's starting refresh limit, in clients per
	// second across the fleet, MinRate to MaxRate; required for
	// KindConfigChange. Limit × Factor is at most MaxRate too.
	Limit float64 `json:"limit,omitempty"`
	// Factor is what the config change multiplies the limit by, in
	// (1, 10000]. Default 100.
	Factor float64 `json:"factor,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// Failure policies of the Redis-backed components while Redis cannot
// answer (RedisSpec.Failure): fleet.FailLocal, FailOpen and FailClosed.
const (
	FailureLocal  = "local"
	FailureOpen   = "open"
	FailureClosed = "closed"
)

// RedisSpec models the Redis the protected run's coordination (the origin
// budget, the admission gate, the push budget, the config change's limit
// and the rollouts' store) lives on. See the package documentation, "The
// Redis model".
type RedisSpec struct {
	// Latency is how long, in virtual time, every coordination call the
	// protected run makes takes to have its effect (an origin-budget or
	// admission decision, a push, a rollout advance, a due notice found
	// by a page view), on either store. 0 to 1 s; default 0, so that the
	// built-ins keep their figures (a realistic round trip is 0.2 to 1 ms).
	Latency Duration `json:"latency,omitempty"`
	// Failure is what the Redis-backed components answer while Redis
	// cannot (during Outages): "local" (fleet.FailLocal, the default the
	// library ships and recommends), "open" or "closed".
	Failure string `json:"failure,omitempty"`
	// Outages are windows of virtual time during which every Redis call
	// fails. At most 16, in time order, not overlapping, none covering
	// trigger.at. They need the Redis store (Config.Redis; stormsim
	// -redis): on the memory store there is no Redis to lose, and the
	// failure policy is the Redis backends' own.
	Outages []RedisOutage `json:"outages,omitempty"`
}

// RedisOutage is a window during which Redis cannot be reached, such as
// {"at": "2m30s", "for": "30s", "lose_data": true}.
type RedisOutage struct {
	// At is when the outage starts, in (0, duration).
	At Duration `json:"at"`
	// For is how long it lasts: 1 ms to 1 h, ending before the run does.
	For Duration `json:"for"`
	// LoseData makes Redis come back empty, as after a restart without
	// persistence: the run's keys are deleted when the outage starts.
	LoseData bool `json:"lose_data,omitempty"`
}

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

// defaultAcceptS is the time in which a node accepts its whole client
// population at the default NodeSpec.AcceptRate, seconds.
const defaultAcceptS = 10

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
		c.Backoff = PolicySlot
	}
	if c.UnprotectedBackoff == "" {
		c.UnprotectedBackoff = PolicyNone
	}
	// retry.Backoff's defaults, what httpmw.Transport and grpcmw.Client
	// ship.
	setDur(&c.BackoffBase, 100*time.Millisecond)
	setDur(&c.BackoffCap, 10*time.Second)
	setDur(&c.HintJitter, time.Second) // retry.Backoff's default HintJitterMax
	if c.RetryTokens == 0 {
		c.RetryTokens = 10
	}
	if c.RetryRatio == 0 {
		c.RetryRatio = 0.1
	}
	n := &s.Node
	if n.Keys == 0 && s.Clients > 0 {
		n.Keys = max(1, s.Clients/1000)
	}
	setDur(&n.CacheTTL, 30*time.Second)
	setDur(&n.Latency, 5*time.Millisecond)
	if n.AcceptRate == 0 && s.Clients > 0 {
		n.AcceptRate = max(MinRate, float64(s.Clients)/float64(s.Nodes)/defaultAcceptS)
	}
	setDur(&n.AcceptBacklog, time.Second)
	setDur(&n.ConnectTimeout, 30*time.Second)
	setDur(&n.HealthCheck, 5*time.Second)
	o := &s.Origin
	setDur(&o.Latency, 20*time.Millisecond)
	setDur(&o.Timeout, 10*time.Second)
	setDur(&o.MaxQueue, 5*time.Second)
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	p := &s.Protection
	if p.OriginBudget == 0 {
		p.OriginBudget = 0.8 * o.Capacity
	}
	if p.RolloutRate == 0 {
		p.RolloutRate = p.OriginBudget
	}
	if p.PushBudget == 0 {
		p.PushBudget = 1.02 * p.RolloutRate
	}
	if p.Cohorts == 0 {
		p.Cohorts = 100
	}
	setDur(&p.MinDuration, time.Minute)
	if p.AdmissionRate == 0 {
		p.AdmissionRate = p.RolloutRate
	}
	setDur(&p.AdmissionHorizon, 10*time.Minute)
	setDur(&p.Ramp, 10*time.Minute)
	setDur(&p.Tick, time.Second)
	setDur(&p.PushInterval, min(40*time.Millisecond, p.Tick.D()))
	if h := p.Headroom; h != nil {
		if h.Ceiling == 0 {
			h.Ceiling = 2 * p.OriginBudget
		}
		if h.Floor == 0 {
			h.Floor = 0.01 * h.Ceiling
		}
		if h.Initial == 0 {
			h.Initial = min(max(p.OriginBudget, h.Floor), h.Ceiling)
		}
		setDur(&h.Interval, time.Second)
		if h.Tolerance == 0 {
			h.Tolerance = 0.5
		}
		if p.CallsPerClient == 0 {
			p.CallsPerClient = 1
			if c.ReconnectOnInvalidate {
				p.CallsPerClient = 2
			}
		}
	}
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
	if s.Redis.Failure == "" {
		s.Redis.Failure = FailureLocal
	}
	// The warm-up triggers' settings, only for them, so that the other
	// scenarios read as before.
	switch t.Kind {
	case KindContentPush, KindColdNode:
		if p.WarmWorkers == 0 {
			p.WarmWorkers = 4
		}
		if p.WarmChunk == 0 {
			p.WarmChunk = 1000
		}
		if t.Kind == KindColdNode {
			setDur(&p.SlowStart, time.Minute)
		}
	case KindHotKey:
		setDur(&p.FillLease, 10*time.Second)
	}
}

// fieldErr returns a validation error for the field at path.
func fieldErr(path, format string, args ...any) error {
	return fmt.Errorf("%w: scenario.%s: %s", ErrInvalidScenario, path, fmt.Sprintf(format, args...))
}

// checkRate checks a rate or capacity: finite, MinRate to MaxRate per
// second (or 0 where allowZero says it may be unset).
func checkRate(path string, v float64, allowZero bool) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fieldErr(path, "must be finite, got %v", v)
	case v < 0:
		return fieldErr(path, "must not be negative, got %v", v)
	case v == 0 && allowZero:
		return nil
	case v == 0:
		return fieldErr(path, "must be > 0, got 0")
	case v < MinRate || v > MaxRate:
		return fieldErr(path, "must be between %g and %g per second, got %v", MinRate, float64(MaxRate), v)
	}
	return nil
}

func checkDur(path string, d Duration, lo, hi time.Duration) error {
	if d.D() < lo || d.D() > hi {
		return fieldErr(path, "must be between %v and %v, got %v", lo, hi, d.D())
	}
	return nil
}

// checkWholeSeconds refuses a duration with a fraction of a second: the
// per-second series have one entry per whole second of the run.
func checkWholeSeconds(path string, d Duration) error {
	if d.D()%time.Second != 0 {
		return fieldErr(path, "must be a whole number of seconds, got %v", d.D())
	}
	return nil
}

func checkInt(path string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fieldErr(path, "must be between %d and %d, got %d", lo, hi, v)
	}
	return nil
}

func checkPolicy(path, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	return fieldErr(path, "must be %s, got %q", strings.Join(q, ", "), truncate(v, 40))
}

// Validate checks every field, after Defaults; the error wraps
// ErrInvalidScenario and names the first bad field's path. It also refuses
// protection settings the protected run cannot keep (see checkProtection):
// an origin budget or admission rate above the origin's capacity, and a
// push budget or push interval whose burst breaks the scenario's bound on
// changed_over_budget. Softer findings are Warnings.
func (s *Scenario) Validate() error {
	if !nameRE.MatchString(s.Name) {
		return fieldErr("name", "must be 1 to 64 of a-z, 0-9, '-' and '_', got %q", truncate(s.Name, 70))
	}
	if len(s.Description) > 4096 {
		return fieldErr("description", "must be at most 4096 bytes, got %d", len(s.Description))
	}
	c, n, o, p := s.Client, s.Node, s.Origin, s.Protection
	checks := []error{
		checkInt("clients", s.Clients, 1, MaxClients),
		checkInt("nodes", s.Nodes, 1, MaxNodes),
		checkDur("duration", s.Duration, time.Minute, MaxDuration),
		checkWholeSeconds("duration", s.Duration),
		checkDur("client.poll_interval", c.PollInterval, 100*time.Millisecond, time.Hour),
		checkDur("client.copy_ttl", c.CopyTTL, c.PollInterval.D(), 1000*time.Hour),
		checkDur("client.retry_delay", c.RetryDelay, time.Millisecond, time.Hour),
		checkDur("client.reaction", c.Reaction, 0, time.Hour),
		checkPolicy("client.backoff", c.Backoff, PolicySlot, PolicyJitter, PolicyNone),
		checkPolicy("client.unprotected_backoff", c.UnprotectedBackoff, PolicyNone, PolicyJitter),
		checkDur("client.backoff_base", c.BackoffBase, time.Millisecond, time.Hour),
		checkDur("client.backoff_cap", c.BackoffCap, c.BackoffBase.D(), 24*time.Hour),
		checkDur("client.hint_jitter", c.HintJitter, 0, time.Minute),
		checkInt("client.retry_tokens", c.RetryTokens, 1, 1000),
		checkInt("node.keys", n.Keys, 1, MaxClients),
		checkDur("node.cache_ttl", n.CacheTTL, 0, 24*time.Hour),
		checkDur("node.latency", n.Latency, 0, time.Minute),
		checkRate("node.accept_rate", n.AcceptRate, false),
		checkDur("node.accept_backlog", n.AcceptBacklog, time.Millisecond, time.Minute),
		checkDur("node.connect_timeout", n.ConnectTimeout, time.Millisecond, 10*time.Minute),
		checkDur("node.health_check", n.HealthCheck, time.Millisecond, time.Hour),
		checkRate("origin.capacity", o.Capacity, false),
		checkDur("origin.latency", o.Latency, 0, time.Minute),
		checkDur("origin.timeout", o.Timeout, time.Millisecond, time.Hour),
		checkDur("origin.max_queue", o.MaxQueue, time.Millisecond, time.Hour),
		checkInt("origin.concurrency", o.Concurrency, 1, 10_000),
		checkRate("protection.origin_budget", p.OriginBudget, false),
		checkRate("protection.rollout_rate", p.RolloutRate, false),
		checkRate("protection.push_budget", p.PushBudget, false),
		checkInt("protection.cohorts", p.Cohorts, guardMinCohorts, limiter.MaxCohorts),
		checkDur("protection.min_duration", p.MinDuration, time.Second, MaxDuration),
		checkRate("protection.admission_rate", p.AdmissionRate, false),
		checkDur("protection.admission_horizon", p.AdmissionHorizon, time.Second, 24*time.Hour),
		checkDur("protection.ramp", p.Ramp, 0, MaxDuration),
		checkDur("protection.tick", p.Tick, 10*time.Millisecond, time.Minute),
		checkDur("protection.push_interval", p.PushInterval, 10*time.Millisecond, max(p.Tick.D(), 10*time.Millisecond)),
		checkDur("redis.latency", s.Redis.Latency, 0, time.Second),
		checkPolicy("redis.failure", s.Redis.Failure, FailureLocal, FailureOpen, FailureClosed),
	}
	if math.IsNaN(c.RetryRatio) || c.RetryRatio < 1e-6 || c.RetryRatio > float64(c.RetryTokens) {
		checks = append(checks, fieldErr("client.retry_ratio", "must be in [0.000001, retry_tokens], got %v", c.RetryRatio))
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if err := s.validateOrigin(); err != nil {
		return err
	}
	if e := float64(n.Keys) * float64(s.Nodes); e > MaxCacheEntries {
		return fieldErr("node.keys", "node.keys × nodes is %.0f cache entries, more than %d", e, MaxCacheEntries)
	}
	if err := s.validateTrigger(); err != nil {
		return err
	}
	if err := s.validateRedis(); err != nil {
		return err
	}
	if polls := float64(s.Clients) * s.Duration.Seconds() / s.Client.PollInterval.Seconds(); polls > MaxPolls {
		return fieldErr("clients", "clients × duration ÷ client.poll_interval is %.3g polls, more than %.0g: shorten the run or poll less often", polls, float64(MaxPolls))
	}
	if err := s.validateHeadroom(); err != nil {
		return err
	}
	if len(s.Bounds) > 100 {
		return fieldErr("bounds", "at most 100 bounds, got %d", len(s.Bounds))
	}
	for i, b := range s.Bounds {
		if err := b.validate(fmt.Sprintf("bounds[%d]", i), 0); err != nil {
			return err
		}
	}
	return s.checkProtection()
}

func (s *Scenario) validateOrigin() error {
	o := s.Origin
	if cv := o.serviceCV(); math.IsNaN(cv) || cv < 0 || cv > 10 {
		return fieldErr("origin.service_cv", "must be in [0, 10], got %v", cv)
	}
	if math.IsNaN(o.Degrade) || o.Degrade < 0 || o.Degrade > 10 {
		return fieldErr("origin.degrade", "must be in [0, 10], got %v", o.Degrade)
	}
	if len(o.Changes) > 16 {
		return fieldErr("origin.changes", "at most 16 changes, got %d", len(o.Changes))
	}
	var prevEnd Duration
	for k, c := range o.Changes {
		path := fmt.Sprintf("origin.changes[%d]", k)
		if c.At <= 0 || c.At >= s.Duration {
			return fieldErr(path+".at", "must be in (0, duration = %v), got %v", s.Duration.D(), c.At.D())
		}
		if math.IsNaN(c.Factor) || c.Factor < 1e-3 || c.Factor > 100 {
			return fieldErr(path+".factor", "must be in [0.001, 100], got %v", c.Factor)
		}
		if c.For < 0 {
			return fieldErr(path+".for", "must not be negative, got %v", c.For.D())
		}
		if k > 0 && (prevEnd == 0 || c.At < prevEnd) {
			return fieldErr(path+".at", "must be after the end of origin.changes[%d] (changes in time order, not overlapping), got %v", k-1, c.At.D())
		}
		prevEnd = c.At + c.For
		if c.For == 0 {
			prevEnd = 0
		}
	}
	return nil
}

// validateHeadroom checks protection.headroom and
// protection.calls_per_client.
func (s *Scenario) validateHeadroom() error {
	p := s.Protection
	if c := p.CallsPerClient; c != 0 && (math.IsNaN(c) || c < 1 || c > 100) {
		return fieldErr("protection.calls_per_client", "must be between 1 and 100, got %v", c)
	}
	h := p.Headroom
	if h == nil {
		return nil
	}
	for _, err := range []error{
		checkRate("protection.headroom.ceiling", h.Ceiling, false),
		checkRate("protection.headroom.floor", h.Floor, false),
		checkRate("protection.headroom.initial", h.Initial, false),
		checkDur("protection.headroom.interval", h.Interval, 100*time.Millisecond, time.Minute),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case h.Floor > h.Ceiling:
		return fieldErr("protection.headroom.floor", "%s is above protection.headroom.ceiling %s", fmtNum(h.Floor), fmtNum(h.Ceiling))
	case h.Floor > s.Origin.Capacity:
		return fieldErr("protection.headroom.floor", "%s per second is above origin.capacity %s: the limit could never fall to what the origin can take",
			fmtNum(h.Floor), fmtNum(s.Origin.Capacity))
	case h.Initial < h.Floor || h.Initial > h.Ceiling:
		return fieldErr("protection.headroom.initial", "%s is outside [floor %s, ceiling %s]", fmtNum(h.Initial), fmtNum(h.Floor), fmtNum(h.Ceiling))
	case math.IsNaN(h.Tolerance) || h.Tolerance <= 0 || h.Tolerance > 100:
		return fieldErr("protection.headroom.tolerance", "must be above 0 and at most 100, got %v", h.Tolerance)
	}
	return nil
}

func (s *Scenario) validateRedis() error {
	outs := s.Redis.Outages
	if len(outs) > 16 {
		return fieldErr("redis.outages", "at most 16 outages, got %d", len(outs))
	}
	var prevEnd Duration
	for k, o := range outs {
		path := fmt.Sprintf("redis.outages[%d]", k)
		if o.At <= 0 || o.At >= s.Duration {
			return fieldErr(path+".at", "must be in (0, duration = %v), got %v", s.Duration.D(), o.At.D())
		}
		if err := checkDur(path+".for", o.For, time.Millisecond, time.Hour); err != nil {
			return err
		}
		if o.At+o.For >= s.Duration {
			return fieldErr(path+".for", "must end before the run does (duration = %v), got at %v + for %v", s.Duration.D(), o.At.D(), o.For.D())
		}
		if k > 0 && o.At <= prevEnd {
			return fieldErr(path+".at", "must be after the end of redis.outages[%d] (outages in time order, not overlapping), got %v", k-1, o.At.D())
		}
		prevEnd = o.At + o.For
		if t := s.Trigger.At; o.At <= t && t <= o.At+o.For {
			return fieldErr(path, "covers trigger.at = %v: the trigger's own call to Redis (a rollout's start) would fail; start the outage after it", t.D())
		}
	}
	return nil
}

// validateWarm checks node.zipf and the warm-up triggers' settings (set
// for another trigger, they are ignored, and Warnings says so).
func (s *Scenario) validateWarm() error {
	p, k := s.Protection, s.Trigger.Kind
	if z := s.Node.Zipf; math.IsNaN(z) || z < 0 || z > 4 {
		return fieldErr("node.zipf", "must be in [0, 4], got %v", z)
	}
	if (k == KindContentPush || k == KindColdNode || k == KindHotKey) && s.Node.CacheTTL == 0 {
		return fieldErr("node.cache_ttl", "must be above 0 for %s (it is about the node caches)", k)
	}
	for _, err := range []error{
		checkOptInt("protection.warm_workers", p.WarmWorkers, 1, 1024),
		checkOptInt("protection.warm_chunk", p.WarmChunk, 1, 100_000),
		checkOptDur("protection.fill_lease", p.FillLease, time.Millisecond, time.Hour),
		checkOptDur("protection.slow_start", p.SlowStart, time.Second, time.Hour),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// warmFields are the warm-up triggers' settings, each with the triggers
// it applies to.
func (s *Scenario) warmFields() []struct {
	path  string
	set   bool
	kinds []string
} {
	p := s.Protection
	return []struct {
		path  string
		set   bool
		kinds []string
	}{
		{"protection.warm_workers", p.WarmWorkers != 0, []string{KindContentPush, KindColdNode}},
		{"protection.warm_chunk", p.WarmChunk != 0, []string{KindContentPush, KindColdNode}},
		{"protection.fill_lease", p.FillLease != 0, []string{KindHotKey}},
		{"protection.slow_start", p.SlowStart != 0, []string{KindColdNode}},
	}
}

// checkOptInt checks an integer that is 0 (unset: not this trigger's) or
// in [lo, hi].
func checkOptInt(path string, v, lo, hi int) error {
	if v == 0 {
		return nil
	}
	return checkInt(path, v, lo, hi)
}

// checkOptDur checks a duration that is 0 (unset) or in [lo, hi].
func checkOptDur(path string, d Duration, lo, hi time.Duration) error {
	if d == 0 {
		return nil
	}
	return checkDur(path, d, lo, hi)
}

func (s *Scenario) validateTrigger() error {
	t := s.Trigger
	switch t.Kind {
	case KindRogueInvalidate, KindIncident, KindReconnectStorm, KindConfigChange, KindContentPush, KindColdNode, KindHotKey:
	default:
		return fieldErr("trigger.kind", "must be one of %q, %q, %q, %q, %q, %q, %q, got %q",
			KindRogueInvalidate, KindReconnectStorm, KindIncident, KindConfigChange, KindContentPush, KindColdNode, KindHotKey, truncate(t.Kind, 40))
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
	if t.Kind == KindReconnectStorm && t.Cause != "blip" && t.Cause != "restart" && t.Cause != "cold-start" {
		return fieldErr("trigger.cause", "must be \"blip\", \"restart\" or \"cold-start\", got %q", truncate(t.Cause, 40))
	}
	if t.Cause == "cold-start" && t.Share != 1 {
		return fieldErr("trigger.share", "must be 1 for cause cold-start (every node restarts), got %v", t.Share)
	}
	if t.Kind != KindReconnectStorm && t.Cause != "" {
		return fieldErr("trigger.cause", "applies to %s only, got %q for %s", KindReconnectStorm, truncate(t.Cause, 40), t.Kind)
	}
	if err := checkDur("trigger.downtime", t.Downtime, 0, time.Hour); err != nil {
		return err
	}
	if err := s.validateWarm(); err != nil {
		return err
	}
	if err := checkRate("trigger.limit", t.Limit, t.Kind != KindConfigChange); err != nil {
		return err
	}
	if math.IsNaN(t.Factor) || t.Factor <= 1 || t.Factor > 10000 {
		return fieldErr("trigger.factor", "must be in (1, 10000], got %v", t.Factor)
	}
	if l := t.Limit * t.Factor; l > MaxRate {
		return fieldErr("trigger.factor", "trigger.limit × trigger.factor is %g per second, more than %g", l, float64(MaxRate))
	}
	return nil
}

// Scale returns a copy of s resized to clients, with every rate and
// capacity (origin capacity and queue limit, the node caches' keys and
// accept rate, the protection budgets and the config change's limit) multiplied by
// clients ÷ s.Clients, so that the dynamics (utilisation, waves, time to
// converge) stay those of the original. The copy is validated.
func (s *Scenario) Scale(clients int) (*Scenario, error) {
	c := *s
	c.Bounds = append([]Bound(nil), s.Bounds...)
	if h := s.Protection.Headroom; h != nil {
		hc := *h // the copy's own, scaled below
		c.Protection.Headroom = &hc
	}
	if clients == s.Clients {
		return &c, c.Validate()
	}
	if clients < 1 || clients > MaxClients {
		return nil, fieldErr("clients", "must be between 1 and %d, got %d", MaxClients, clients)
	}
	f := float64(clients) / float64(s.Clients)
	c.Clients = clients
	c.Origin.Capacity *= f
	c.Origin.Concurrency = max(1, int(math.Round(float64(c.Origin.Concurrency)*f)))
	c.Origin.Changes = append([]CapacityChange(nil), s.Origin.Changes...)
	c.Redis.Outages = append([]RedisOutage(nil), s.Redis.Outages...)
	c.Node.Keys = max(1, int(math.Round(float64(c.Node.Keys)*f)))
	c.Node.AcceptRate *= f
	c.Protection.OriginBudget *= f
	c.Protection.RolloutRate *= f
	c.Protection.PushBudget *= f
	c.Protection.AdmissionRate *= f
	c.Trigger.Limit *= f
	if h := c.Protection.Headroom; h != nil {
		h.Floor *= f
		h.Ceiling *= f
		h.Initial *= f
	}
	return &c, c.Validate()
}
