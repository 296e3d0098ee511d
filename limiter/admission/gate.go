package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/cohorthash"
	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/pace"
	"github.com/herdcap/herdcap/internal/ramp"
	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

// MaxClientIDLen is the longest client ID a Gate accepts, in bytes: 256,
// the bound of the client ID that httpmw and grpcmw carry too.
const MaxClientIDLen = ticket.MaxClientIDLen

// Config configures New: limiter.Config's fields (Clock, Ramp, MaxKeys
// for the table of booked slots) and the gate's own. The zero value is the
// default configuration.
type Config struct {
	limiter.Config
	// Horizon is how far ahead slots are booked: a client whose slot would
	// be further out is deferred instead. Size it to the largest herd that
	// should come back flat: herd ÷ rate. If Horizon is 0, 1 min; it must
	// not be negative.
	Horizon time.Duration
	// SlotGrace is how long after its slot a client is still let in on
	// it; later, the slot is forgotten and the client is a new session. It
	// must cover what a transport adds to the wait: rounding Retry-After
	// up to whole seconds, the client's own jitter, the network. Memory for
	// booked slots grows with it. If SlotGrace is 0, 10 s; it must not be
	// negative.
	SlotGrace time.Duration
	// Jitter is the window of the jitter added to a booked client's slot.
	// If Jitter is 0, one interval of the limit (the gap between two
	// slots), capped at half the slot grace, which keeps returns flat at
	// every time scale; a wider window smears returns over it. It must not
	// be negative nor exceed half of SlotGrace.
	Jitter time.Duration
	// Cohorts is the number of cohorts clients are placed in
	// (Decision.Cohort); deferred clients come back in cohort order. If
	// Cohorts is 0, 10; at most limiter.MaxCohorts.
	Cohorts int
	// Salt salts cohorts and jitter (see SetSalt). Nodes sharing a gate
	// should use the same salt.
	Salt string
	// TicketKeys turns on session tickets: the first key signs the ticket
	// every admitted client is given, every key verifies (put a new key
	// first and keep the old one until its tickets have expired, to
	// rotate). None: no tickets. 1 to 16 keys of 16 to 1024 bytes (32
	// random bytes is a good key), the same on every node; they are
	// copied.
	TicketKeys [][]byte
	// TicketTTL is how long a ticket lets its client rejoin. If TicketTTL
	// is 0, 10 min; otherwise between 1 ms and 366 days.
	TicketTTL time.Duration
	// Headroom, if set, paces the gate by the origin's spare capacity:
	// the gate admits at most Spare ÷ CallsPerSession sessions per second,
	// and never more than its limit (see the package doc, "Paced by
	// headroom"). Spare is read at most once per 100 ms of the gate's
	// clock, without locks, by the Admit that finds the last reading
	// stale. If Headroom is nil, the limit alone applies.
	Headroom limiter.Headroom
	// CallsPerSession is how many origin calls a new session causes (its
	// first fetches), to turn Headroom's spare calls per second into
	// sessions per second. If CallsPerSession is 0, 1; otherwise finite
	// and > 0. Unused without Headroom.
	CallsPerSession float64
}

// SharedConfig configures NewShared: Config's fields, the failure policy
// and the logger. The zero value is the default configuration.
type SharedConfig struct {
	Config
	// Failure is what the gate answers while Redis cannot: FailLocal (the
	// zero value) runs the memory store on this node's share of the limit,
	// FailOpen lets everyone in, FailClosed refuses with
	// limiter.ErrUnavailable and a RetryAfter spread over one to two
	// breaker periods.
	Failure fleet.FailurePolicy
	// Logger receives the breaker's transitions (Warn when it opens, Info for
	// its other changes) and failed heartbeats (Debug). If Logger is nil,
	// nothing is logged. (An in-process gate has nothing to log.)
	Logger *slog.Logger
}

// Defaults of Config's zero values.
const (
	defaultHorizon   = time.Minute
	defaultSlotGrace = 10 * time.Second
	defaultCohorts   = 10
	defaultTicketTTL = 10 * time.Minute
	// defaultName is the Redis.Name of a shared gate unless set, so that
	// it shares no keys or live-node set with budgets left at "default".
	defaultName = "admission"
)

// Gate admits new sessions on a budget of Limit sessions per period, in
// process (New) or across a fleet through Redis (NewShared): the answer to
// reconnect storms. A client over the budget is given a slot, a time at
// which it will be let in, and slots are booked at exactly the budget's
// rate, so that a herd that disconnected at once comes back as a flat
// stream (the package doc explains how).
//
// Admit takes the client's ID (an address, a session ID: the client carries
// nothing else) and the ticket it presented, if any. A client refused with
// a slot (Decision.Booked) is let in when it comes back at or after
// Decision.RetryAt, within Config.SlotGrace; coming back early gets the
// same slot again. Past Config.Horizon a client is deferred: told when to
// come back, without a slot. With Config.TicketKeys an admitted client gets
// a ticket, and a valid one lets it rejoin without spending the budget; a
// bad ticket makes a new session, never an error. A shared gate makes one
// round trip per Admit, bounded by Redis.Timeout, and SharedConfig.Failure
// answers while Redis cannot. The limit ramps as a budget's does.
//
// Create a Gate with New or NewShared. It is safe for concurrent use. Close
// it when done (a shared gate stops its heartbeat); Admit then fails with
// limiter.ErrClosed.
type Gate struct {
	horizon, grace, jitter time.Duration
	cohorts                int
	salt                   atomic.Pointer[string]
	signer                 *ticket.Signer
	ticketTTL              time.Duration

	limit    ramp.State
	room     *pace.Reader  // nil without Config.Headroom
	paced    atomic.Uint64 // float64 bits: the last pace read from room
	pacedAt  atomic.Int64  // when it was read: the clock's Unix ns
	reading  atomic.Bool   // an Admit is reading room
	clock    limiter.Clock // nil: the monotonic clock (see now)
	injected bool          // shared: pass the clock's time instead of using TIME
	mem      *memStore
	link     *remote.Link // nil for the memory store
	failure  fleet.FailurePolicy
	// bucketKey is the shared gate's budget; slotPrefix+bucketkey.Tag(id) a
	// client's booked slot. They share one hash tag, so one cluster slot.
	bucketKey, slotPrefix string
	closed                atomic.Bool
	name                  string                  // Config.Name (shared: or the Redis name), for events
	onAdmit               func(observe.Admission) // Config.Observe.Admission; nil: none
}

// Decision is the answer to one Admit. It is returned by value, like
// limiter.Decision. A transport needs Admitted, RetryAfter and Ticket. A
// refusal, booked, deferred or under FailClosed (limiter.ErrUnavailable),
// is "service unavailable", not "too many requests": the client is over no
// quota of its own, the server is refusing new sessions for a while. httpmw
// answers 503 with Retry-After, grpcmw codes.Unavailable with the wait.
type Decision struct {
	// Admitted reports whether the session may start.
	Admitted bool
	// Rejoined reports that the client presented a valid ticket and was
	// admitted without spending the budget.
	Rejoined bool
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
	// sends it back early. An HTTP Retry-After should round it up to whole
	// seconds, which the slot grace covers.
	RetryAfter time.Duration
	// RetryAt is the time of the decision plus RetryAfter (zero when
	// admitted): for a booked client, the time it will be let in.
	RetryAt time.Time
	// Cohort is the client's cohort (0 to Config.Cohorts - 1) under the
	// current salt.
	Cohort int
	// Ticket is set when the client was admitted and the gate issues
	// tickets (Config.TicketKeys): the transport hands it to the client,
	// which presents it when it reconnects.
	Ticket string
	// Limit is the limit applied: under FailLocal, this node's share.
	Limit limiter.Limit
	// Via says who decided: limiter.ViaLocal (the memory store, and every
	// rejoin, which is checked in process), limiter.ViaRedis, or
	// limiter.ViaFallback (the failure policy).
	Via limiter.Via
}

// Stats describes a Gate's in-process table of booked slots (for a shared
// gate, the table of its FailLocal fallback).
type Stats struct {
	// Slots is the number of booked slots held.
	Slots int
	// Capacity is the most slots held (Config.MaxKeys).
	Capacity int
	// Evictions counts slots dropped to make room, expired or not.
	Evictions uint64
	// LossyEvictions counts dropped slots that were still live: their
	// clients book again (and the budget pays twice) when they return. A
	// growing count means the table is too small: it should hold at least
	// rate × (horizon + grace) slots.
	LossyEvictions uint64
}

// New returns an in-process gate of l sessions, with booked slots in a
// bounded table. The table should hold every slot that can be live at
// once, rate × (horizon + grace); if Config.MaxKeys is 0 it is sized so
// (with room to spare, at least 100,000 and at most 4Mi slots). Bad
// configuration is an error wrapping limiter.ErrInvalidLimit or
// limiter.ErrInvalidConfig that names the field.
func New(l limiter.Limit, cfg Config) (*Gate, error) {
	g, err := newGate(l, cfg)
	if err != nil {
		return nil, err
	}
	g.mem = newMemStore(g.tableSize(l, cfg.MaxKeys), g.grace)
	g.clock, g.injected = cfg.Clock, cfg.Clock != nil
	g.readPace(g.now())
	return g, nil
}

// NewShared returns a gate of l sessions shared by every node with the same
// Redis, Prefix and Name (if Redis.Name is "", "admission"). Each Admit is
// one Lua script; the budget and the booked slots of a gate live in one
// cluster slot. Under FailLocal it starts the live-node heartbeat: call
// Close when done.
func NewShared(r fleet.Redis, l limiter.Limit, cfg SharedConfig) (*Gate, error) {
	g, err := newGate(l, cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.Failure > fleet.FailClosed {
		return nil, fmt.Errorf("%w: SharedConfig.Failure is unknown: %v", limiter.ErrInvalidConfig, cfg.Failure)
	}
	clock := sysclock.Or(cfg.Clock)
	var onBreaker func(observe.Breaker)
	if cfg.Observe != nil {
		onBreaker = cfg.Observe.Breaker
	}
	link, err := remote.Open(remote.Config(r), remote.Use{DefaultName: defaultName,
		NoHeartbeat: remote.NoHeartbeatUnder("SharedConfig.Failure", cfg.Failure.String()),
		Breaker:     onBreaker, Policy: cfg.Name},
		cfg.Clock, cfg.Logger, cfg.Failure.String())
	if err != nil {
		return nil, err
	}
	g.link, g.failure = link, cfg.Failure
	if g.name == "" {
		g.name = link.Name
	}
	g.mem = newMemStore(g.tableSize(l, cfg.MaxKeys), g.grace)
	g.clock, g.injected = clock, cfg.Clock != nil
	g.bucketKey = link.Prefix + ":" + link.Name + ":{a:" + link.Name + "}"
	g.slotPrefix = g.bucketKey + ":"
	if g.room != nil && cfg.Logger != nil {
		g.room.Log = cfg.Logger
	}
	g.readPace(g.now())
	if cfg.Failure == fleet.FailLocal {
		link.StartHeartbeat()
	}
	return g, nil
}

// maxAutoSlots caps the slot table's default size.
const maxAutoSlots = 1 << 22

// tableSize is the size of the slot table: maxKeys, or when 0 room for
// every slot that can be live at once under l, rate × (horizon + grace),
// with a quarter more for the unevenness of the shards; at least
// keymap.DefaultMax and at most 4Mi. The table grows with use only.
func (g *Gate) tableSize(l limiter.Limit, maxKeys int) int {
	if maxKeys > 0 {
		return maxKeys
	}
	need := l.PerSecond() * (g.horizon + g.grace).Seconds() * 1.25
	return int(min(max(need, keymap.DefaultMax), maxAutoSlots))
}

func newGate(l limiter.Limit, cfg Config) (*Gate, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) (*Gate, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{limiter.ErrInvalidConfig}, args...)...)
	}
	window, ok := ramp.Window(cfg.Ramp)
	switch {
	case !ok:
		return bad("Config.Ramp must be >= 0 or NoRamp, got %v", cfg.Ramp)
	case cfg.MaxKeys < 0:
		return bad("Config.MaxKeys must be >= 0, got %d", cfg.MaxKeys)
	case cfg.Horizon < 0:
		return bad("Config.Horizon must be >= 0, got %v", cfg.Horizon)
	case cfg.SlotGrace < 0:
		return bad("Config.SlotGrace must be >= 0, got %v", cfg.SlotGrace)
	case cfg.Jitter < 0:
		return bad("Config.Jitter must be >= 0, got %v", cfg.Jitter)
	case cfg.Cohorts < 0 || cfg.Cohorts > limiter.MaxCohorts:
		return bad("Config.Cohorts must be between 0 and %d, got %d", limiter.MaxCohorts, cfg.Cohorts)
	case cfg.TicketTTL != 0 && (cfg.TicketTTL < time.Millisecond || cfg.TicketTTL > ticket.MaxTTL):
		return bad("Config.TicketTTL must be 0 or between 1ms and %v, got %v", ticket.MaxTTL, cfg.TicketTTL)
	}
	perSession, ok := pace.Per(cfg.CallsPerSession)
	if !ok {
		return bad("Config.CallsPerSession must be 0 (1) or finite and > 0, got %v", cfg.CallsPerSession)
	}
	g := &Gate{
		horizon:   or(cfg.Horizon, defaultHorizon),
		grace:     or(cfg.SlotGrace, defaultSlotGrace),
		jitter:    cfg.Jitter,
		cohorts:   cfg.Cohorts,
		ticketTTL: or(cfg.TicketTTL, defaultTicketTTL),
		name:      cfg.Name,
	}
	if cfg.Observe != nil {
		g.onAdmit = cfg.Observe.Admission
	}
	if g.cohorts == 0 {
		g.cohorts = defaultCohorts
	}
	if g.jitter > g.grace/2 {
		return bad("Config.Jitter (%v) must be at most half of Config.SlotGrace (%v)", g.jitter, g.grace)
	}
	if len(cfg.TicketKeys) > 0 {
		s, err := ticket.New(cfg.TicketKeys, "Config.TicketKeys")
		if err != nil {
			return bad("%w", err)
		}
		g.signer = s
	}
	salt := cfg.Salt
	g.salt.Store(&salt)
	g.limit.Init(ramp.Limit(l), window)
	if cfg.Headroom != nil {
		g.room = &pace.Reader{H: cfg.Headroom, Per: perSession, Log: slog.New(slog.DiscardHandler), What: "admission"}
	}
	return g, nil
}

// or returns d, or def when d is 0.
func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Admit decides whether the session of clientID may start now. ticket is
// the ticket the client presented ("" for none). clientID must be 1 to
// MaxClientIDLen bytes (else limiter.ErrInvalidRequest). An error
// otherwise means no decision could be made: limiter.ErrClosed, the
// caller's context, fleet.ErrUnexpectedReply, or limiter.ErrUnavailable
// under FailClosed (whose decision still says when to come back).
func (g *Gate) Admit(ctx context.Context, clientID, ticket string) (Decision, error) {
	d, err := g.admit(ctx, clientID, g.now(), ticket)
	if g.onAdmit != nil && (err == nil || errors.Is(err, limiter.ErrUnavailable)) {
		g.onAdmit(observe.Admission{Policy: g.name, Granted: d.Admitted, Wait: d.RetryAfter, Ticket: d.Rejoined,
			Source: observe.Source(d.Via)})
	}
	return d, err
}

// SetSalt changes the salt of cohorts and jitter, e.g. to a storm's incident
// or deploy ID, so that a new storm orders clients afresh. Slots already
// booked keep their times. Nodes sharing a gate should be given the same
// salt.
func (g *Gate) SetSalt(salt string) { g.salt.Store(&salt) }

// Limit returns the limit in force now: the configured limit (ramping
// after SetLimit), without Config.Headroom's pace (Decision.Limit reports
// the limit an Admit applied, paced).
func (g *Gate) Limit() limiter.Limit {
	l, _ := g.limit.At(g.now())
	return limiter.Limit(l)
}

// SetLimit moves the limit to l, ramping over Config.Ramp from now. A
// shared gate's limit travels with each call, so nodes must be set alike.
func (g *Gate) SetLimit(l limiter.Limit) error {
	if err := l.Validate(); err != nil {
		return err
	}
	g.limit.Set(g.now(), ramp.Limit(l))
	return nil
}

// Stats reports the in-process slot table.
func (g *Gate) Stats() Stats { return g.mem.stats() }

// Close makes later Admits fail with limiter.ErrClosed and, for a shared
// gate, stops the heartbeat and leaves the live-node set. It is
// idempotent.
func (g *Gate) Close() error {
	g.closed.Store(true)
	if g.link != nil {
		g.link.Close()
	}
	return nil
}

// monoBase anchors the monotonic clock that a memory gate uses when no
// clock is injected.
var monoBase = time.Now()

// now reads the clock or, for a memory gate without one, the monotonic
// clock anchored at process start (as limiter.Local does).
func (g *Gate) now() time.Time {
	if g.clock == nil {
		return monoBase.Add(time.Since(monoBase))
	}
	return g.clock.Now()
}

// status is what the store decided for a client.
type status uint8

const (
	admitNow      status = iota // a token was free
	admitBooked                 // a slot was booked; wait is its distance
	admitSlot                   // the client came back for its slot
	admitEarly                  // the client came back before its slot
	admitDeferred               // the queue is full past the horizon
)

func checkClientID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty client ID", limiter.ErrInvalidRequest)
	}
	if len(id) > MaxClientIDLen {
		return fmt.Errorf("%w: client ID is %d bytes, more than MaxClientIDLen (%d)", limiter.ErrInvalidRequest, len(id), MaxClientIDLen)
	}
	return nil
}

func (g *Gate) admit(ctx context.Context, id string, t time.Time, tk string) (Decision, error) {
	lim, _ := g.limit.At(t)
	d := Decision{Limit: g.pacedLimit(limiter.Limit(lim), t), Via: limiter.ViaLocal}
	if g.link != nil {
		d.Via = limiter.ViaRedis
	}
	if g.closed.Load() {
		return d, limiter.ErrClosed
	}
	if err := checkClientID(id); err != nil {
		return d, err
	}
	h := cohorthash.Sum(*g.salt.Load(), id)
	hi, _ := bits.Mul64(h, uint64(g.cohorts))
	d.Cohort = int(hi)
	if tk != "" && g.signer != nil && g.signer.Verify(id, tk, t) == nil {
		d.Admitted, d.Rejoined, d.Via = true, true, limiter.ViaLocal
		return d, g.issue(&d, id, t)
	}
	var (
		st   status
		wait time.Duration
	)
	if g.link == nil {
		st, wait = g.mem.decide(id, t.UnixMicro(), d.Limit, g.horizon)
	} else {
		var err error
		st, wait, err = g.redisDecide(ctx, id, t, d.Limit)
		if errors.Is(err, fleet.ErrUnexpectedReply) {
			return d, err
		}
		if err != nil {
			return g.failed(ctx, err, d, id, t, h)
		}
	}
	g.place(&d, st, wait, h, t)
	if d.Admitted {
		return d, g.issue(&d, id, t)
	}
	return d, nil
}

// place fills in d from the store's answer.
func (g *Gate) place(d *Decision, st status, wait time.Duration, h uint64, t time.Time) {
	switch st {
	case admitNow, admitSlot:
		d.Admitted = true
		return
	case admitBooked, admitEarly:
		d.Booked = true
		j := g.jitter
		if j == 0 {
			j = min(d.Limit.Interval(), g.grace/2)
		}
		d.RetryAfter = ceilMillis(wait + time.Duration(jitterFrac(h)*float64(j)))
	case admitDeferred:
		// Past the horizon: no slot. Come back half a horizon to a
		// horizon after the queue has shrunk to the horizon, in cohort
		// order (with jitter inside the cohort's share). Never sooner than
		// half a horizon: a deferred client that came straight back would
		// only be deferred again.
		spread := (float64(d.Cohort) + jitterFrac(h)) / float64(g.cohorts)
		d.RetryAfter = ceilMillis(wait - g.horizon + time.Duration((1+spread)/2*float64(g.horizon)))
	}
	d.RetryAt = t.Add(d.RetryAfter)
}

// failed answers for a Redis call that failed: the caller's cancellation or
// a bad reply as errors, a store failure by the failure policy.
func (g *Gate) failed(ctx context.Context, err error, d Decision, id string, t time.Time, h uint64) (Decision, error) {
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return d, ctx.Err()
	}
	if !redisguard.IsStoreFailure(err) {
		return d, fmt.Errorf("%w: %w", fleet.ErrUnexpectedReply, err)
	}
	d.Via = limiter.ViaFallback
	switch g.failure {
	case fleet.FailOpen:
		d.Admitted = true
		return d, g.issue(&d, id, t)
	case fleet.FailClosed:
		// Spread over one to two breaker periods, so the refused do not
		// all probe the moment the breaker half-opens.
		open := g.link.BreakerOpen
		d.RetryAfter = ceilMillis(open + time.Duration(jitterFrac(h)*float64(open)))
		d.RetryAt = t.Add(d.RetryAfter)
		return d, fmt.Errorf("%w: %w", limiter.ErrUnavailable, err)
	}
	live := max(1, g.link.Live())
	d.Limit = limiter.Limit{
		Rate:   d.Limit.Rate / float64(live),
		Period: d.Limit.Period,
		Burst:  int(math.Ceil(float64(d.Limit.Burst) / float64(live))),
	}
	st, wait := g.mem.decide(id, t.UnixMicro(), d.Limit, g.horizon)
	g.place(&d, st, wait, h, t)
	if d.Admitted {
		return d, g.issue(&d, id, t)
	}
	return d, nil
}

// issue gives an admitted client a ticket, if the gate issues them.
func (g *Gate) issue(d *Decision, id string, t time.Time) error {
	if g.signer == nil {
		return nil
	}
	tk, err := g.signer.Issue(id, t, g.ticketTTL)
	if err != nil {
		return fmt.Errorf("%w: %w", limiter.ErrInvalidRequest, err)
	}
	d.Ticket = tk
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
