package limiter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxClientIDLen is the longest client ID that Admission and ResumeSigner
// accept, in bytes.
const MaxClientIDLen = 512

// Defaults of the admission options.
const (
	// DefaultHorizon is how far ahead an Admission books slots by default.
	DefaultHorizon = time.Minute
	// DefaultSlotGrace is how long after its slot a client is still let in
	// on it by default.
	DefaultSlotGrace = 10 * time.Second
	// DefaultAdmissionCohorts is the default number of cohorts an
	// Admission reports and spreads deferred clients over.
	DefaultAdmissionCohorts = 10
	// defaultAdmissionName is the Redis name (WithName) of an Admission
	// unless set, so that it shares no keys or live-node set with budgets
	// left at "default".
	defaultAdmissionName = "admission"
)

// Admission is a gate for new sessions on a budget of Limit sessions per
// period, in process (NewAdmission) or across a fleet through Redis
// (NewRedisAdmission). It is the answer to reconnect storms: a client over
// the budget is not just told "later" but given a slot, a time at which it
// will be let in, and the slots are booked at exactly the budget's rate, so
// that a herd of clients that all disconnected at once comes back as a flat
// stream.
//
// # Slots
//
// A new session takes one token from a token bucket of the Limit. When
// there is none, the token is reserved ahead (the bucket goes into debt,
// like Reserver.ReserveN) and the time it becomes available is the
// client's slot; the client is refused with RetryAt at its slot. When it
// comes back at or after its slot (and within the slot grace, WithSlotGrace)
// it is let in without asking the bucket again: its token was spent when
// the slot was booked. Coming back early gets the same slot again, never a
// new one. A client is remembered by its client ID alone (an address, a
// session ID), so clients that carry nothing else work: the memory store
// keeps the booked slots in a bounded table (see NewAdmission), and Redis
// keeps one key per booked client, which expires after the grace, written
// by the same Lua script that books the slot (one round trip per Admit).
//
// The result is exact: the k-th booked client's slot is k intervals of the
// limit after the bucket ran dry, so returns are flat by construction, not
// on average. Placing clients by cohort into spread windows instead would be
// flat only on average: a window expecting n clients gets n ± √n, and
// 10,000 clients hashed over 20 s put more than 550 into some one-second
// window in most storms (see TestCohortWindowsAreNotFlat).
//
// # Jitter and cohorts
//
// Each client's RetryAt is its slot plus a jitter inside the gap between
// slots (one interval of the limit by default, WithJitter), so returns stay
// flat even at fine time scales while no two clients are told the same
// instant. The jitter and the client's cohort (Cohort, salted by WithSalt or
// SetSalt, reported in AdmitDecision.Cohort) come from one salted hash of
// the client ID, not from a random source: they are sticky, the same on
// every node, reproducible in simulations, and change when the salt
// changes, which should happen per storm so the same clients are not
// always last. Order within the schedule is first come, first served: a
// herd arrives in network order, which no gate can improve on without
// holding requests back.
//
// Slots are booked at most the horizon ahead (WithHorizon), so that a huge
// herd cannot book unbounded debt (slots booked for clients that never come
// back are budget lost). A client that arrives when the queue is full is
// deferred: refused without a slot (Booked false) and told to come back
// half a horizon to a horizon after the queue has shrunk to the horizon,
// spread over that half horizon by cohort and jitter; it then competes for
// the slots that opened meanwhile. Deferral keeps the debt and the memory
// bounded (at most rate × horizon booked slots) at the price of refusals:
// deferred clients come back, and are refused, until they get a slot, so
// the gate sees more arrivals than the budget admits (about
// deferred/(0.75 × horizon) per second; see TestAdmissionHerdPastHorizon).
// Size the horizon to the largest herd that should come back flat:
// herd/rate.
//
// # Resume
//
// With WithResume, every admitted client is given a resume token
// (AdmitDecision.ResumeToken, see ResumeSigner). A client that presents a
// valid token for its client ID resumes: it is let in without spending the
// budget, and given a fresh token. A token that is malformed, forged,
// another client's or expired makes the client a new session, never an
// error. Resumes bypass the budget by design (resuming must be cheap for
// this to be right); put a separate budget in front of resumes if they are
// not.
//
// # Failure
//
// On Redis, every Admit passes through the time budget and breaker of the
// Redis backends (WithTimeout, WithBreaker), and while Redis cannot answer
// the failure policy decides (WithFailure): FailLocal (the default) runs the
// memory store on this node's share of the limit, FailOpen lets everyone
// in, FailClosed refuses with ErrUnavailable and a RetryAfter spread over
// one to two breaker periods.
//
// Create an Admission with NewAdmission or NewRedisAdmission (the zero
// value is not usable). An Admission is safe for concurrent use. Close it
// when done (on Redis, Close stops the live-node heartbeat).
type Admission struct {
	horizon, grace, jitter time.Duration
	cohorts                int
	salt                   atomic.Pointer[string]
	signer                 *ResumeSigner
	resumeTTL              time.Duration

	limit    limitState
	clock    Clock // nil: the monotonic clock (see now)
	injected bool  // Redis: pass the clock's time instead of using TIME
	mem      *memAdmission
	r        *remote // nil for the memory store
	// bucketKey is the Redis budget; slotPrefix+bucketkey.Tag(id) a
	// client's booked slot. They share one hash tag, so one cluster slot.
	bucketKey, slotPrefix string
	closed                atomic.Bool
}

// AdmitDecision is the answer to one Admit. It is returned by value, like
// Decision. A transport needs only Admitted, RetryAfter (gRPC pushback in
// milliseconds, or RetryAfterSeconds for an HTTP Retry-After) and
// ResumeToken; a refusal is "too many requests", except with
// ErrUnavailable (FailClosed), which is "service unavailable".
type AdmitDecision struct {
	// Admitted reports whether the session may start.
	Admitted bool
	// Resumed reports that the client presented a valid resume token and
	// was admitted without spending the budget.
	Resumed bool
	// Booked reports a refusal with a slot held for the client: coming
	// back at RetryAt (and within the slot grace after it) lets it in.
	// False when admitted, and for refusals without a slot (the queue was
	// full past the horizon, or the store failed with FailClosed), after
	// which the client is still told when to come back but may be
	// refused again.
	Booked bool
	// RetryAfter is 0 when admitted; otherwise how long the client should
	// wait before trying again, rounded up to a whole millisecond so that
	// a transport that truncates to milliseconds (gRPC pushback) never
	// sends it back early.
	RetryAfter time.Duration
	// RetryAt is the time of the decision plus RetryAfter (zero when
	// admitted): for a booked client, the time it will be let in.
	RetryAt time.Time
	// Cohort is the client's cohort (0 to the WithCohorts count - 1) under
	// the current salt.
	Cohort int
	// ResumeToken is set when the client was admitted and the Admission
	// issues resume tokens (WithResume): the transport hands it to the
	// client, which presents it when it reconnects.
	ResumeToken string
	// Limit is the limit applied: on FailLocal, this node's share.
	Limit Limit
	// Source says who decided: SourceLocal (the memory store, and every
	// resume, which is checked in process), SourceRedis, or
	// SourceFallback (the failure policy).
	Source Source
}

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, as an
// HTTP Retry-After header carries it: 0 when admitted, else at least 1.
// Rounding up keeps a booked client's return at or after its slot (the
// slot grace covers the extra second).
func (d AdmitDecision) RetryAfterSeconds() int {
	if d.RetryAfter <= 0 {
		return 0
	}
	return int((d.RetryAfter + time.Second - 1) / time.Second)
}

// AdmissionStats describes an Admission's in-process table of booked slots
// (on Redis, the table of its FailLocal fallback).
type AdmissionStats struct {
	// Slots is the number of booked slots held.
	Slots int
	// Capacity is the most slots held (see NewAdmission).
	Capacity int
	// Evictions counts slots dropped to make room, expired or not.
	Evictions uint64
	// LossyEvictions counts dropped slots that were still live: their
	// clients book again (and the budget pays twice) when they return. A
	// growing count means the table is too small: it should hold at least
	// rate × (horizon + grace) slots.
	LossyEvictions uint64
}

// AdmissionOption configures NewAdmission and NewRedisAdmission: one of the
// admission options (WithHorizon, WithSlotGrace, WithJitter, WithCohorts,
// WithSalt, WithResume), or a backend Option for the store underneath.
// The memory store accepts WithClock, WithRamp, WithMaxKeys (the slot
// table's size) and WithLogger; Redis accepts those of NewRedis (WithClock,
// WithRamp, WithTimeout, WithFailure, WithBreaker, WithName, WithPrefix,
// WithNodeID, WithHeartbeat, WithLogger). Redis names default to
// "admission".
type AdmissionOption interface {
	applyAdmission(c *admissionConfig) error
}

type admissionConfig struct {
	horizon, grace, jitter time.Duration
	cohorts                int
	salt                   string
	signer                 *ResumeSigner
	resumeTTL              time.Duration
	backend                []Option
}

type admissionOption struct {
	name  string
	apply func(c *admissionConfig) error
}

func (o admissionOption) applyAdmission(c *admissionConfig) error {
	if err := o.apply(c); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidOption, o.name, err)
	}
	return nil
}

// applyAdmission makes every backend Option an AdmissionOption: it
// configures the Admission's store.
func (o Option) applyAdmission(c *admissionConfig) error {
	c.backend = append(c.backend, o)
	return nil
}

// WithHorizon sets how far ahead slots are booked (default DefaultHorizon):
// a client whose slot would be further out is deferred instead. It must be
// > 0.
func WithHorizon(d time.Duration) AdmissionOption {
	return admissionOption{"WithHorizon", func(c *admissionConfig) error {
		if d <= 0 {
			return fmt.Errorf("horizon must be > 0, got %v", d)
		}
		c.horizon = d
		return nil
	}}
}

// WithSlotGrace sets how long after its slot a client is still let in on it
// (default DefaultSlotGrace); later, the slot is forgotten and the client is
// a new session. It must cover what a transport adds to the wait: rounding
// Retry-After up to whole seconds, the client's own jitter, the network.
// It must be > 0; memory for booked slots grows with it.
func WithSlotGrace(d time.Duration) AdmissionOption {
	return admissionOption{"WithSlotGrace", func(c *admissionConfig) error {
		if d <= 0 {
			return fmt.Errorf("grace must be > 0, got %v", d)
		}
		c.grace = d
		return nil
	}}
}

// WithJitter sets the window of the jitter added to a booked client's slot.
// Zero (the default) means one interval of the limit (the gap between two
// slots), which keeps returns flat at every time scale; a wider window
// smears returns over it. It must be >= 0 and at most half the slot grace;
// the default is capped at half the grace.
func WithJitter(d time.Duration) AdmissionOption {
	return admissionOption{"WithJitter", func(c *admissionConfig) error {
		if d < 0 {
			return fmt.Errorf("jitter must be >= 0, got %v", d)
		}
		c.jitter = d
		return nil
	}}
}

// WithCohorts sets the number of cohorts clients are placed in (default
// DefaultAdmissionCohorts, at most MaxCohorts). Deferred clients come back
// in cohort order over half a horizon.
func WithCohorts(n int) AdmissionOption {
	return admissionOption{"WithCohorts", func(c *admissionConfig) error {
		if err := ValidateCohorts("cohorts", n); err != nil {
			return err
		}
		c.cohorts = n
		return nil
	}}
}

// WithSalt sets the initial salt of cohorts and jitter (default ""). Nodes
// sharing a Redis admission should use the same salt. See SetSalt.
func WithSalt(salt string) AdmissionOption {
	return admissionOption{"WithSalt", func(c *admissionConfig) error {
		c.salt = salt
		return nil
	}}
}

// WithResume makes the Admission honour resume tokens signed by s, and give
// every admitted client a fresh token that expires after ttl (between 1 ms
// and 366 days).
func WithResume(s *ResumeSigner, ttl time.Duration) AdmissionOption {
	return admissionOption{"WithResume", func(c *admissionConfig) error {
		if s == nil {
			return fmt.Errorf("signer is nil")
		}
		if ttl < time.Millisecond || ttl > maxResumeTTL {
			return fmt.Errorf("ttl must be between 1ms and %v, got %v", maxResumeTTL, ttl)
		}
		c.signer, c.resumeTTL = s, ttl
		return nil
	}}
}

// NewAdmission returns an in-process Admission of l sessions, with booked
// slots in a bounded table. The table should hold every slot that can be
// live at once, rate × (horizon + grace); by default it is sized so (with
// room to spare, at least DefaultMaxKeys and at most 4Mi slots), and
// WithMaxKeys sets its size. Bad configuration is an error wrapping
// ErrInvalidLimit or ErrInvalidOption that names the field.
func NewAdmission(l Limit, opts ...AdmissionOption) (*Admission, error) {
	a, cfg, err := newAdmission("NewAdmission", kindLocal, l, opts)
	if err != nil {
		return nil, err
	}
	o, err := buildOptions(kindLocal, cfg.backend)
	if err != nil {
		return nil, err
	}
	a.limit.init(l, o.ramp)
	maxKeys := o.maxKeys
	if maxKeys == DefaultMaxKeys {
		maxKeys = a.slotTableSize(l)
	}
	a.mem = newMemAdmission(maxKeys, a.grace)
	if o.clockSet {
		a.clock, a.injected = o.clock, true
	}
	return a, nil
}

// NewRedisAdmission returns an Admission of l sessions shared by every node
// with the same Redis and name (WithName, default "admission"). Each Admit
// is one Lua script (one round trip); the budget and the booked slots of an
// Admission live in one cluster slot. It takes the client rules, time budget,
// breaker and failure policy of NewRedis, and starts the live-node heartbeat
// under FailLocal: call Close when done.
func NewRedisAdmission(c redis.UniversalClient, l Limit, opts ...AdmissionOption) (*Admission, error) {
	a, cfg, err := newAdmission("NewRedisAdmission", kindRedis, l, opts)
	if err != nil {
		return nil, err
	}
	r, err := newRemote(c, kindRedis, append([]Option{WithName(defaultAdmissionName)}, cfg.backend...))
	if err != nil {
		return nil, err
	}
	a.r = r
	a.limit.init(l, r.o.ramp)
	a.mem = newMemAdmission(a.slotTableSize(l), a.grace)
	a.clock, a.injected = r.o.clock, r.o.clockSet
	a.bucketKey = r.o.prefix + ":" + r.o.name + ":{a:" + r.o.name + "}"
	a.slotPrefix = a.bucketKey + ":"
	if r.o.failure == FailLocal {
		r.startHeartbeat()
	}
	return a, nil
}

// maxAutoSlots caps the slot table's default size.
const maxAutoSlots = 1 << 22

// slotTableSize is the default size of the slot table: room for every slot
// that can be live at once under l, rate × (horizon + grace), with a quarter
// more for the unevenness of the shards; at least DefaultMaxKeys and at most
// 4Mi. The table grows with use only.
func (a *Admission) slotTableSize(l Limit) int {
	need := l.PerSecond() * (a.horizon + a.grace).Seconds() * 1.25
	return int(min(max(need, DefaultMaxKeys), maxAutoSlots))
}

func newAdmission(ctor string, kind backendKind, l Limit, opts []AdmissionOption) (*Admission, admissionConfig, error) {
	cfg := admissionConfig{horizon: DefaultHorizon, grace: DefaultSlotGrace, cohorts: DefaultAdmissionCohorts}
	if err := l.Validate(); err != nil {
		return nil, cfg, err
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, cfg, fmt.Errorf("%w: nil AdmissionOption", ErrInvalidOption)
		}
		if err := opt.applyAdmission(&cfg); err != nil {
			return nil, cfg, err
		}
	}
	for _, o := range cfg.backend {
		if o.apply != nil && o.scope&kind == 0 {
			return nil, cfg, fmt.Errorf("%w: %s does not apply to %s", ErrInvalidOption, o.name, ctor)
		}
	}
	if cfg.jitter > cfg.grace/2 {
		return nil, cfg, fmt.Errorf("%w: WithJitter: jitter (%v) must be at most half the slot grace (%v)", ErrInvalidOption, cfg.jitter, cfg.grace)
	}
	a := &Admission{
		horizon:   cfg.horizon,
		grace:     cfg.grace,
		jitter:    cfg.jitter,
		cohorts:   cfg.cohorts,
		signer:    cfg.signer,
		resumeTTL: cfg.resumeTTL,
	}
	a.salt.Store(&cfg.salt)
	return a, cfg, nil
}

// Admit decides whether the session of clientID may start now. resumeToken
// is what the client presented ("" for none). See AdmitAt.
func (a *Admission) Admit(ctx context.Context, clientID, resumeToken string) (AdmitDecision, error) {
	return a.admit(ctx, clientID, a.now(), a.r == nil || a.injected, resumeToken)
}

// AdmitAt is Admit at time t (passed to Redis instead of its TIME): the form
// tests and simulations use. clientID must be 1 to MaxClientIDLen bytes
// (else ErrInvalidKey). An error otherwise means no decision could be made:
// ErrClosed, the caller's context, ErrUnexpectedReply, or ErrUnavailable
// under FailClosed (whose decision still says when to come back).
func (a *Admission) AdmitAt(ctx context.Context, clientID string, t time.Time, resumeToken string) (AdmitDecision, error) {
	return a.admit(ctx, clientID, t, true, resumeToken)
}

// SetSalt changes the salt of cohorts and jitter, e.g. to a storm's incident
// or deploy ID, so that a new storm orders clients afresh. Slots already
// booked keep their times. Nodes sharing a Redis admission should be given
// the same salt.
func (a *Admission) SetSalt(salt string) { a.salt.Store(&salt) }

// Limit returns the limit in force now.
func (a *Admission) Limit() Limit {
	l, _ := a.limit.at(a.now())
	return l
}

// SetLimit ramps the limit to l over the WithRamp window, starting now.
// On Redis the limit travels with each call, so nodes must be set alike.
func (a *Admission) SetLimit(l Limit) error { return a.SetLimitAt(a.now(), l) }

// SetLimitAt is SetLimit with the ramp starting at t.
func (a *Admission) SetLimitAt(t time.Time, l Limit) error { return a.limit.set(t, l) }

// Stats reports the in-process slot table.
func (a *Admission) Stats() AdmissionStats { return a.mem.stats() }

// Close makes later Admits fail with ErrClosed and, on Redis, stops the
// heartbeat and leaves the live-node set. It is idempotent.
func (a *Admission) Close() error {
	a.closed.Store(true)
	if a.r != nil {
		a.r.close()
	}
	return nil
}

// now reads the injected clock or, for the memory store by default, the
// monotonic clock anchored at process start (see Local.now).
func (a *Admission) now() time.Time {
	if a.clock == nil {
		return monoBase.Add(time.Since(monoBase))
	}
	return a.clock.Now()
}

// admitStatus is what the store decided for a client.
type admitStatus uint8

const (
	admitNow      admitStatus = iota // a token was free
	admitBooked                      // a slot was booked; wait is its distance
	admitSlot                        // the client came back for its slot
	admitEarly                       // the client came back before its slot
	admitDeferred                    // the queue is full past the horizon
)

func checkClientID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty client ID", ErrInvalidKey)
	}
	if len(id) > MaxClientIDLen {
		return fmt.Errorf("%w: client ID is %d bytes, more than MaxClientIDLen (%d)", ErrInvalidKey, len(id), MaxClientIDLen)
	}
	return nil
}

func (a *Admission) admit(ctx context.Context, id string, t time.Time, passTime bool, token string) (AdmitDecision, error) {
	lim, _ := a.limit.at(t)
	d := AdmitDecision{Limit: lim, Source: SourceLocal}
	if a.r != nil {
		d.Source = SourceRedis
	}
	if a.closed.Load() {
		return d, ErrClosed
	}
	if err := checkClientID(id); err != nil {
		return d, err
	}
	h := cohortHash(*a.salt.Load(), id)
	hi, _ := bits.Mul64(h, uint64(a.cohorts))
	d.Cohort = int(hi)
	if token != "" && a.signer != nil && a.signer.VerifyAt(id, token, t) == nil {
		d.Admitted, d.Resumed, d.Source = true, true, SourceLocal
		return d, a.issue(&d, id, t)
	}
	var (
		st   admitStatus
		wait time.Duration
	)
	if a.r == nil {
		st, wait = a.mem.decide(id, t.UnixMicro(), lim, a.horizon)
	} else {
		var err error
		st, wait, err = a.redisDecide(ctx, id, t, passTime, lim)
		if errors.Is(err, ErrUnexpectedReply) {
			return d, err
		}
		if err != nil {
			return a.failed(ctx, err, d, id, t, h)
		}
	}
	a.place(&d, st, wait, h, t)
	if d.Admitted {
		return d, a.issue(&d, id, t)
	}
	return d, nil
}

// place fills in d from the store's answer.
func (a *Admission) place(d *AdmitDecision, st admitStatus, wait time.Duration, h uint64, t time.Time) {
	switch st {
	case admitNow, admitSlot:
		d.Admitted = true
		return
	case admitBooked, admitEarly:
		d.Booked = true
		j := a.jitter
		if j == 0 {
			j = min(d.Limit.Interval(), a.grace/2)
		}
		d.RetryAfter = ceilMillis(wait + time.Duration(jitterFrac(h)*float64(j)))
	case admitDeferred:
		// Past the horizon: no slot. Come back half a horizon to a
		// horizon after the queue has shrunk to the horizon, in cohort
		// order (with jitter inside the cohort's share). Never sooner than
		// half a horizon: a deferred client that came straight back would
		// only be deferred again.
		spread := (float64(d.Cohort) + jitterFrac(h)) / float64(a.cohorts)
		d.RetryAfter = ceilMillis(wait - a.horizon + time.Duration((1+spread)/2*float64(a.horizon)))
	}
	d.RetryAt = t.Add(d.RetryAfter)
}

// failed answers for a Redis call that failed: the caller's cancellation or
// a bad reply as errors, a store failure by the failure policy.
func (a *Admission) failed(ctx context.Context, err error, d AdmitDecision, id string, t time.Time, h uint64) (AdmitDecision, error) {
	if ctx.Err() != nil && !isTimeout(err) {
		return d, ctx.Err()
	}
	if !isStoreFailure(err) {
		return d, fmt.Errorf("%w: %w", ErrUnexpectedReply, err)
	}
	d.Source = SourceFallback
	switch a.r.o.failure {
	case FailOpen:
		d.Admitted = true
		return d, a.issue(&d, id, t)
	case FailClosed:
		// Spread over one to two breaker periods, so the refused do not
		// all probe the moment the breaker half-opens.
		d.RetryAfter = ceilMillis(a.r.o.brOpen + time.Duration(jitterFrac(h)*float64(a.r.o.brOpen)))
		d.RetryAt = t.Add(d.RetryAfter)
		return d, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	live := max(1, a.r.live.Load())
	d.Limit = Limit{
		Rate:   d.Limit.Rate / float64(live),
		Period: d.Limit.Period,
		Burst:  int(math.Ceil(float64(d.Limit.Burst) / float64(live))),
	}
	st, wait := a.mem.decide(id, t.UnixMicro(), d.Limit, a.horizon)
	a.place(&d, st, wait, h, t)
	if d.Admitted {
		return d, a.issue(&d, id, t)
	}
	return d, nil
}

// issue gives an admitted client a resume token, if the Admission issues
// them.
func (a *Admission) issue(d *AdmitDecision, id string, t time.Time) error {
	if a.signer == nil {
		return nil
	}
	tok, err := a.signer.IssueAt(id, t, a.resumeTTL)
	if err != nil {
		return err
	}
	d.ResumeToken = tok
	return nil
}

// jitterFrac derives from a client's cohort hash a second, independent
// number in [0, 1): the client's place within a jitter window.
func jitterFrac(h uint64) float64 {
	h ^= 0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11) / (1 << 53)
}

// ceilMillis rounds d up to a whole millisecond; negative is 0.
func ceilMillis(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if d > math.MaxInt64-time.Millisecond {
		return math.MaxInt64 / time.Millisecond * time.Millisecond
	}
	return (d + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}
