package simulate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/serverside"
	originguard "github.com/herdcap/herdcap/limiter/origin"
)

// Mode says whether a run has herdcap's protection.
type Mode string

const (
	// Unprotected is the fleet of the incident: invalidations fan out at
	// once, nothing paces the origin or admits sessions, and clients follow
	// ClientSpec.UnprotectedBackoff (by default the naive client).
	Unprotected Mode = "unprotected"
	// Protected runs the same fleet through herdcap's real components:
	// rollouts delivered by pull and by invalidate.Pusher, admission, an
	// origin budget and ramped limits, with clients following
	// ClientSpec.Backoff (by default herdcap's client: backoff, slots and a
	// retry budget).
	Protected Mode = "protected"
)

// Client flags.
const (
	fConn      uint8 = 1 << iota // connected to its node
	fCopy                        // holds a valid copy of its page data
	fPending                     // affected by the trigger and not yet converged
	fLooked                      // the open need's first node lookup is done
	fRefresh                     // told to refresh (config change), not yet applied
	fReconnect                   // must reconnect to converge (dropped, or reloading)
	fDenied                      // the last failure was a refusal with a hint
	fKeep                        // its next reconnect reuses the connection a refusal left open
)

// Event kinds, in the order same-time events run.
const (
	evSystem    uint8 = iota // arg: a sys* constant; id: a node where it matters
	evAct                    // the client's action slot; arg: an a* constant
	evDirective              // a directive reaches a client; arg: a dir* constant
	evPoll                   // a client polls (a page view)
)

const (
	sysTick uint8 = iota
	sysTrigger
	sysNodeUp
	sysPush
	sysCapacity // a boundary of an origin capacity change
	sysLBOut    // the load balancer's health check finds node id down
	sysLBIn     // the load balancer's health check finds node id up
	sysAdvance  // a tick's rollout advance, RedisSpec.Latency after it
	sysRedisDown
	sysRedisUp
	sysRecord   // an origin call completes: record it with the guard (id: its parked slot)
	sysWarm     // a warm worker's next step (id: the worker)
	sysWarmDone // a warm worker's origin call completes (id: the worker)
	sysFill     // a fill lease's origin call completes (id: the key)
	sysFillCall // a fill lease's origin call, held by the guard, goes (id: the key)
)

// Actions: at most one is pending per client (actAt/act say which; an
// event that does not match them is stale and skipped).
const (
	aNone uint8 = iota
	aFetch
	aFetchHit // a fetch the node cache answers
	aFetchOK  // a fetch the origin answers: it fills the node cache
	aFetchErr
	aConnect
	aConnOK
	aConnErr
	aFetchOrigin   // a fetch's origin call, held by the origin budget
	aSessionOrigin // a session's origin call, held by the origin budget
	aHandshake     // the node has done a connect attempt's handshake
	aSyn           // a connect attempt's first SYN retransmit; aSyn+k-1 the k-th
	aSynLast       = aSyn + synRetries - 1
)

const (
	dirInvalidate uint8 = iota // the unprotected rogue broadcast
	dirRefresh                 // the config change's paced refresh
	dirDue                     // a notice a page view found due, delivered RedisSpec.Latency later
)

// client policies, resolved per run.
const (
	polNone uint8 = iota
	polJitter
	polSlot
)

type nodeState struct {
	up bool
	// out: the load balancer has taken the node out of rotation (its
	// health check found it down, and has not yet found it up again).
	out bool
	// acc is the node's accept queue.
	acc acceptQueue
	// fill is, per page-data key, when an origin fetch last filled the
	// node's cache entry (virtual ns; noFill: never).
	fill []int64
	// renewed marks, after a content push, the entries filled before it
	// that the warm renewed (new content, the same expiry); nil without a
	// push.
	renewed []bool
}

// hintExact marks a client's hint as exact (a slot the server spread,
// which the client core reads as clientcore.Slot); without it the hint is
// coarse (clientcore.Coarse).
const hintExact = 1 << 31

// noFill marks an empty cache entry: older than any TTL, without overflow.
const noFill = math.MinInt64 / 4

// client is one client's state: 32 bytes, no pointers, so that the
// client array is one flat allocation the garbage collector skips and an
// event touches one cache line of it.
type client struct {
	actAt  int64  // when the pending action is due; -1: none
	needAt int64  // when the open need for data began; -1: none
	epoch  uint64 // the invalidation epoch the client applied
	hint   uint32 // ms: the server's hint with the last refusal; hintExact: a slot
	fails  uint8  // consecutive failed attempts, up to 255
	node   uint8  // the node the client is connected or connecting to
	flags  uint8
	act    uint8 // the pending action
}

// sim is one run.
type sim struct {
	sc       *Scenario
	mode     Mode
	ctx      context.Context
	rng      *rand.Rand
	q        *queue
	syn      synQueues // pending SYN retransmits, out of q
	now      int64
	end      int64
	trig     int64
	clock    *vclock
	org      origin
	acc      acceptModel
	prot     *guards     // server side; nil when unprotected
	cli      *clientSide // herdcap's client components; nil for the naive client
	policy   uint8
	refreshB budget // the config change's refresh limit
	tickRng  *rand.Rand
	ticks    int64
	pushes   int64 // push intervals since the rollout started
	pushFrom int64 // when the rollout started

	cl    []client
	ids   string // client IDs, idLen bytes each
	idLen int

	nodes       []nodeState
	keys        uint64 // page-data keys
	cacheTTL    int64
	curEpoch    uint64 // unprotected: the rogue broadcast's epoch
	target      uint64 // the epoch a client must apply to converge; 0: none
	changeAt    int64  // when the data changed: older cache entries cannot serve a client at target
	pStale      float64
	pollMean    float64
	retryDelay  int64
	reaction    int64
	nodeLat     int64
	keyOf       []uint32 // node.zipf: each client's key; nil: the fixed hash
	pushedAt    int64    // content-push: when the content changed; math.MinInt64: no push
	watch       int      // the node whose cache the node hit rate watches; -1: every node
	warm        *warmer  // content-push and cold-node, protected: the warm
	lease       *leases  // hot-key, protected: the fleet's fill leases
	slow        *slowGate
	hotKey      int      // hot-key: the key that expires; -1: none
	refresh     []uint32 // config change: clients in refresh order
	refreshNext int
	refreshLeft int // config change: clients still to refresh at the trigger

	series        *Series
	hist          hist
	connected     int
	unconverged   int
	affected      int
	lastConverge  int64
	sampled       int // seconds whose levels are written
	redisSeen     int64
	redisFailSeen int64
	rlat          int64 // the coordination calls' latency (RedisSpec.Latency), ns; 0 unprotected
	rdown         bool  // a Redis outage is under way
	originCalls   int64
	intended      int64
	wasted        int64
	events        int64
	progress      func(Progress)
	lastProgress  time.Time
	err           error
}

// Progress describes a run under way, for a progress display.
type Progress struct {
	// Scenario and Mode identify the run.
	Scenario string
	Mode     Mode
	// Virtual is how far the run has got, Duration its length.
	Virtual, Duration time.Duration
	// Events is the number of events processed so far.
	Events int64
}

func (s *sim) sec() int { return int(s.now / int64(time.Second)) }

func (s *sim) id(i int) string { return s.ids[i*s.idLen : (i+1)*s.idLen] }

// node is the node client i is connected or connecting to.
func (s *sim) node(i int) int { return int(s.cl[i].node) }

// key is client i's page-data key: a fixed mix of its index, so that the
// clients of a key spread over every node, or with node.zipf its draw.
func (s *sim) key(i int) int {
	if s.keyOf != nil {
		return int(s.keyOf[i])
	}
	z := uint64(i) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z % s.keys)
}

func (s *sim) jitter(d int64) int64 {
	if d <= 0 {
		return 0
	}
	return int64(s.rng.Float64() * float64(d))
}

func (s *sim) schedulePoll(i int) {
	d := int64(s.rng.ExpFloat64()*s.pollMean) + 1
	s.push(event{at: s.now + d, id: uint32(i), kind: evPoll})
}

func (s *sim) setAct(i int, a uint8, t int64) {
	t = ceilMicro(t)
	s.cl[i].act, s.cl[i].actAt = a, t
	e := event{at: t, id: uint32(i), kind: evAct, arg: a}
	if a >= aSyn && a <= aSynLast && s.syn.push(int(a-aSyn)+1, e) {
		return
	}
	s.q.push(e)
}

// push schedules e at a whole microsecond: the Redis scripts count time in
// µs and the in-process stores in ns, so virtual times on the µs grid are
// the same time to both.
func (s *sim) push(e event) {
	e.at = ceilMicro(e.at)
	s.q.push(e)
}

func ceilMicro(t int64) int64 { return (t + 999) / 1000 * 1000 }

func (s *sim) clearAct(i int) { s.cl[i].act, s.cl[i].actAt = aNone, -1 }

func newSim(ctx context.Context, sc *Scenario, mode Mode) *sim {
	n := sc.Clients
	s := &sim{
		sc: sc, mode: mode, ctx: ctx,
		q:          newQueue(int64(10*time.Millisecond), 14),
		end:        int64(sc.Duration),
		trig:       int64(sc.Trigger.At),
		clock:      &vclock{},
		syn:        newSynQueues(),
		org:        newOrigin(sc),
		acc:        newAcceptModel(sc.Node),
		nodes:      make([]nodeState, sc.Nodes),
		keys:       uint64(sc.Node.Keys),
		cacheTTL:   int64(sc.Node.CacheTTL),
		pStale:     -math.Expm1(-sc.Client.PollInterval.Seconds() / sc.Client.CopyTTL.Seconds()),
		pollMean:   float64(sc.Client.PollInterval),
		retryDelay: int64(sc.Client.RetryDelay),
		reaction:   int64(sc.Client.Reaction),
		nodeLat:    int64(sc.Node.Latency),
		series:     newSeries(int(sc.Duration.D() / time.Second)),
		rlat:       redisLatency(sc, mode),
		watch:      -1,
		hotKey:     -1,
		pushedAt:   math.MinInt64,
	}
	if sc.Trigger.Kind == KindColdNode {
		s.watch = sc.Trigger.Node
	}
	s.keyOf = zipfKeys(sc)
	s.cl = make([]client, n)
	adviseHuge(unsafe.Pointer(unsafe.SliceData(s.cl)), n*int(unsafe.Sizeof(client{})))
	pol := sc.Client.UnprotectedBackoff
	if mode == Protected {
		pol = sc.Client.Backoff
	}
	switch pol {
	case PolicyJitter:
		s.policy = polJitter
	case PolicySlot:
		s.policy = polSlot
	}
	// Unprotected and protected runs of one seed share the client
	// placement, the caches' state and the poll phases: the streams
	// diverge only where the protection acts.
	s.rng = rand.New(rand.NewPCG(sc.Seed, 0x5eed))
	s.tickRng = rand.New(rand.NewPCG(sc.Seed, 0x71c))
	s.idLen = len(strconv.Itoa(n-1)) + 1
	var b strings.Builder
	b.Grow(n * s.idLen)
	var num []byte
	for i := range n {
		num = strconv.AppendInt(num[:0], int64(i), 10)
		b.WriteByte('c')
		for range s.idLen - 1 - len(num) {
			b.WriteByte('0')
		}
		b.Write(num)
	}
	s.ids = b.String()
	// The node caches start in steady state: every entry filled at a
	// random moment within the last TTL.
	for k := range s.nodes {
		s.nodes[k].up = true
		f := make([]int64, sc.Node.Keys)
		for j := range f {
			f[j] = -1 - s.jitter(s.cacheTTL)
		}
		s.nodes[k].fill = f
	}
	for i := range n {
		s.cl[i] = client{flags: fConn | fCopy, actAt: -1, needAt: -1, node: uint8(i % sc.Nodes)}
		s.schedulePoll(i)
	}
	s.steadyCaches()
	s.connected = n
	return s
}

// run processes events until the end of the run.
func (s *sim) run() error {
	s.push(event{at: s.trig, kind: evSystem, arg: sysTrigger})
	for k, c := range s.sc.Origin.Changes {
		s.push(event{at: int64(c.At), id: uint32(2 * k), kind: evSystem, arg: sysCapacity})
		if c.For > 0 {
			s.push(event{at: int64(c.At + c.For), id: uint32(2*k + 1), kind: evSystem, arg: sysCapacity})
		}
	}
	if s.needsTicks() {
		s.push(event{at: 0, kind: evSystem, arg: sysTick})
	}
	if s.prot != nil && s.prot.st.redis != nil {
		for k, o := range s.sc.Redis.Outages {
			s.push(event{at: int64(o.At), id: uint32(k), kind: evSystem, arg: sysRedisDown})
			s.push(event{at: int64(o.At + o.For), id: uint32(k), kind: evSystem, arg: sysRedisUp})
		}
	}
	if s.sc.Trigger.Kind == KindConfigChange {
		s.setupRefresh()
	}
	for s.err == nil {
		e, ok := s.q.peek()
		if ok && e.at <= s.syn.next {
			s.q.skip()
		} else if s.syn.next != math.MaxInt64 {
			e, ok = s.syn.pop(s.cl), true
		}
		if !ok || e.at >= s.end {
			break
		}
		s.advance(e.at)
		if s.events%prefetchBatch == 0 {
			s.prefetch()
		}
		i := int(e.id)
		switch e.kind {
		case evSystem:
			s.system(e)
		case evAct:
			if s.cl[i].actAt == e.at && s.cl[i].act == e.arg {
				s.clearAct(i)
				s.action(i, e.arg)
			}
		case evDirective:
			s.directive(i, e.arg)
		case evPoll:
			s.poll(i)
		}
		s.events++
		if s.events&0xffff == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
			s.report(false)
		}
	}
	if s.err != nil {
		return s.err
	}
	s.advance(s.end)
	s.report(true)
	return nil
}

// prefetchAhead is how many events ahead the run loop asks for the state
// of the clients the events will touch, prefetchBatch events at a time.
// An event's first touch of its client's state is a cache miss (a million
// clients' state does not fit in any cache, and events reach clients in
// random order); asked for early, the miss overlaps the events in between
// instead of stalling the loop (the unprotected 1,000,000-client incident:
// 2.5× less CPU than without; 8 to 32 ahead measure alike).
const (
	prefetchAhead = 16
	prefetchBatch = 8
)

// prefetch asks for the state the events prefetchAhead to prefetchAhead +
// prefetchBatch places ahead in the current bucket read: each one's slot in
// the client array and, in a protected run, its client's ID (hashed by
// the coordinator's AppendDue and the pushers).
func (s *sim) prefetch() {
	ev := s.q.ahead(prefetchAhead, prefetchBatch)
	if len(ev) == 0 {
		return
	}
	prefetchEvents(&ev[0], len(ev), unsafe.Pointer(unsafe.SliceData(s.cl)), unsafe.Sizeof(client{}))
	if s.prot != nil {
		prefetchEvents(&ev[0], len(ev), unsafe.Pointer(unsafe.StringData(s.ids)), uintptr(s.idLen))
	}
}

// needsTicks reports whether the run needs the periodic tick.
func (s *sim) needsTicks() bool {
	return s.sc.Trigger.Kind == KindConfigChange || s.prot != nil
}

func (s *sim) report(final bool) {
	if s.progress == nil {
		return
	}
	if now := time.Now(); final || now.Sub(s.lastProgress) >= 500*time.Millisecond {
		s.lastProgress = now
		s.progress(Progress{Scenario: s.sc.Name, Mode: s.mode, Virtual: time.Duration(s.now), Duration: s.sc.Duration.D(), Events: s.events})
	}
}

// advance moves virtual time to t, writing the levels of every second
// that ends on the way.
func (s *sim) advance(t int64) {
	s.now = t
	s.clock.set(t)
	sec := int(t / int64(time.Second))
	for s.sampled < sec && s.sampled < len(s.series.Connected) {
		s.series.Connected[s.sampled] = float64(s.connected)
		s.series.Unconverged[s.sampled] = float64(s.unconverged)
		if s.prot != nil && s.prot.room != nil {
			s.series.Limit[s.sampled] = s.prot.room.Limit().Rate
			s.series.Spare[s.sampled] = s.prot.room.Spare()
		}
		if s.prot != nil && s.prot.ops != nil {
			n := s.prot.ops.Load()
			s.series.RedisOps[s.sampled] = float64(n - s.redisSeen)
			s.redisSeen = n
			f := s.prot.st.hook.failed.Load()
			s.series.RedisFailed[s.sampled] = float64(f - s.redisFailSeen)
			s.redisFailSeen = f
		}
		s.sampled++
	}
}

func (s *sim) fail(err error) {
	if s.err == nil {
		s.err = fmt.Errorf("simulate: %s %s at %v: %w", s.sc.Name, s.mode, time.Duration(s.now), err)
	}
}

func (s *sim) system(e event) {
	switch e.arg {
	case sysTick:
		s.tick()
		// Ticks keep to their period, each a little late by a random
		// fraction of a millisecond (from their own stream), so that paced
		// decisions do not fall on the exact token boundaries where two
		// stores' float arithmetic could round apart.
		s.ticks++
		next := s.ticks*int64(s.sc.Protection.Tick) + int64(s.tickRng.Float64()*float64(time.Millisecond))
		s.push(event{at: max(next, s.now+1), kind: evSystem, arg: sysTick})
	case sysTrigger:
		s.trigger()
	case sysNodeUp:
		s.nodes[e.id].up = true
		s.nodes[e.id].acc.reset(s.now)
		s.push(event{at: s.now + int64(s.sc.Node.HealthCheck), id: e.id, kind: evSystem, arg: sysLBIn})
	case sysLBOut:
		s.nodes[e.id].out = !s.nodes[e.id].up // back already: the check finds it up
	case sysLBIn:
		if s.nodes[e.id].up {
			s.nodes[e.id].out = false
		}
	case sysCapacity:
		// Every boundary sets the capacity the changes give at this
		// instant, so that one change's end and the next one's start at
		// the same time leave the next in force whichever runs first.
		s.org.setFactor(s.sc.Origin.factorAt(Duration(s.now)))
	case sysAdvance:
		s.advanceRollout()
	case sysRecord:
		s.prot.recordAt(e.id)
	case sysRedisDown, sysRedisUp:
		s.outage(int(e.id), e.arg == sysRedisDown)
	case sysWarm:
		s.warmStep(int(e.id))
	case sysWarmDone:
		s.warmDone(int(e.id))
	case sysFill:
		s.fillDone(int(e.id))
	case sysFillCall:
		s.fillCall(int(e.id))
	case sysPush:
		if !s.pushAll() {
			return // the rollout is pushed: no more push intervals
		}
		s.pushes++
		next := s.pushFrom + s.pushes*int64(s.sc.Protection.PushInterval) + int64(s.tickRng.Float64()*float64(time.Millisecond))
		s.push(event{at: max(next, s.now+1), kind: evSystem, arg: sysPush})
	}
}

func (s *sim) trigger() {
	sc := s.sc
	switch sc.Trigger.Kind {
	case KindRogueInvalidate, KindIncident:
		s.affected = sc.Clients
		for i := range sc.Clients {
			s.cl[i].flags |= fPending
		}
		s.unconverged = sc.Clients
		s.changeAt = s.now
		if s.prot == nil {
			// The rogue node tells every client at once.
			s.curEpoch++
			s.target = s.curEpoch
			for i := range sc.Clients {
				s.push(event{at: s.now + s.jitter(s.reaction), id: uint32(i), kind: evDirective, arg: dirInvalidate})
			}
			return
		}
		ep, err := s.startRollout()
		if err != nil {
			s.fail(err)
			return
		}
		s.target = ep
	case KindReconnectStorm:
		if c := sc.Trigger.Cause; c == "restart" || c == "cold-start" {
			first, last := sc.Trigger.Node, sc.Trigger.Node
			if c == "cold-start" {
				first, last = 0, sc.Nodes-1
			}
			for k := first; k <= last; k++ {
				s.nodes[k].up = false
				for j := range s.nodes[k].fill {
					s.nodes[k].fill[j] = noFill // back empty
				}
				s.push(event{at: s.now + int64(sc.Trigger.Downtime), id: uint32(k), kind: evSystem, arg: sysNodeUp})
				s.push(event{at: s.now + int64(sc.Node.HealthCheck), id: uint32(k), kind: evSystem, arg: sysLBOut})
			}
			// Every connection to the failed nodes drops, node by node.
			for k := first; k <= last; k++ {
				for i := range sc.Clients {
					if s.node(i) == k {
						s.drop(i)
					}
				}
			}
			return
		}
		for i := range sc.Clients {
			if s.rng.Float64() < sc.Trigger.Share {
				s.drop(i)
			}
		}
	case KindContentPush, KindColdNode, KindHotKey:
		s.warmTrigger()
	case KindConfigChange:
		s.refreshLeft = len(s.refresh) - s.refreshNext
		l := refreshLimit(sc.Trigger.Limit*sc.Trigger.Factor, sc.Protection.Tick.D())
		if err := s.refreshBudget().SetLimit(l); err != nil {
			s.fail(err)
		}
	}
}

// drop disconnects client i by the trigger: its reconnect is intended. It
// notices within the reaction spread; a jitter client then backs off
// before its first attempt, as before every other.
func (s *sim) drop(i int) {
	if s.cl[i].flags&fConn != 0 {
		s.connected--
	}
	s.cl[i].flags = s.cl[i].flags&^(fConn|fKeep) | fPending | fReconnect
	s.affected++
	s.unconverged++
	s.intended++
	s.cl[i].fails = 0
	wait := s.jitter(s.reaction)
	if s.policy == polJitter {
		wait += s.cli.delay(0, clientcore.Hint{})
	}
	s.setAct(i, aConnect, s.now+wait)
}

// reload makes client i drop its connection and reconnect, after applying
// an invalidation (ReconnectOnInvalidate): one more session, set up within
// the reaction spread (a page reload).
func (s *sim) reload(i int) {
	if s.cl[i].flags&fConn != 0 {
		s.connected--
	}
	s.cl[i].flags = s.cl[i].flags&^(fConn|fKeep) | fReconnect
	s.intended++
	s.cl[i].fails = 0
	s.setAct(i, aConnect, s.now+s.nodeLat+s.jitter(s.reaction))
}

// disconnect drops client i after a failed fetch (DisconnectOnError).
func (s *sim) disconnect(i int) {
	if s.cl[i].flags&fConn != 0 {
		s.connected--
	}
	s.cl[i].flags &^= fConn | fKeep
	var wait int64
	if s.policy == polNone {
		wait = s.jitter(s.reaction) // the naive client reconnects at once
	} else {
		wait = s.retryWait(i, false)
	}
	s.setAct(i, aConnect, s.now+wait)
}

// retryWait is how long client i waits before its next attempt, after
// s.cl[i].fails failures: the naive client's fixed delay, or a herdcap
// client's full-jitter backoff, honouring the server's hint (useHint,
// when it sent one) under PolicySlot.
func (s *sim) retryWait(i int, useHint bool) int64 {
	if s.policy == polNone {
		return s.retryDelay
	}
	return s.cli.delay(s.attempt(i), s.hint(i, useHint))
}

// failed counts a failed attempt of client i, saturating.
func (s *sim) failed(i int) {
	if s.cl[i].fails < math.MaxUint8 {
		s.cl[i].fails++
	}
}

// attempt is the number, from 0, of client i's retry to come after
// s.cl[i].fails failures.
func (s *sim) attempt(i int) int { return max(int(s.cl[i].fails)-1, 0) }

// hint is what a herdcap client makes of client i's last failure: the
// server's hint when it sent one, honoured under PolicySlot when useHint
// (an admission slot as the transport sent it, exact, or the origin
// guard's Retry-After in whole milliseconds, coarse); else none (full
// jitter).
func (s *sim) hint(i int, useHint bool) clientcore.Hint {
	if s.policy == polSlot && useHint && s.cl[i].flags&fDenied != 0 {
		h := s.cl[i].hint
		if h&hintExact != 0 {
			return clientcore.Hint{Kind: clientcore.Slot, Wait: time.Duration(h&^hintExact) * time.Millisecond}
		}
		return clientcore.Hint{Kind: clientcore.Coarse, Wait: time.Duration(h) * time.Millisecond}
	}
	return clientcore.Hint{}
}

func (s *sim) poll(i int) {
	sec := s.sec()
	s.series.Views[sec]++
	if s.cl[i].flags&fConn != 0 {
		if s.prot != nil {
			s.pollDue(i)
			if s.err != nil {
				return
			}
		}
		switch f := s.cl[i].flags; {
		case f&fConn == 0:
			// The notice reloaded it.
		case f&fCopy != 0:
			if s.rng.Float64() < s.pStale {
				s.cl[i].flags &^= fCopy
				s.need(i)
			} else {
				s.series.Hits[sec]++
			}
		case s.cl[i].act == aNone && s.cl[i].needAt >= 0:
			// The page view asks again (a new request, not a retry).
			s.fetch(i)
		}
	}
	s.schedulePoll(i)
}

// need opens a need for data at client i, if none is open, and starts a
// fetch when the client is connected and idle.
func (s *sim) need(i int) {
	if s.cl[i].needAt < 0 {
		s.cl[i].needAt = s.now
		s.cl[i].flags &^= fLooked
	}
	if s.cl[i].flags&fConn != 0 && s.cl[i].act == aNone {
		s.fetch(i)
	}
}

// cached reports whether client i's node holds an entry of its key that
// may serve it: filled within the TTL and, once the client has applied
// the change, after the data changed.
func (s *sim) cached(i int) bool {
	if s.cacheTTL <= 0 {
		return false
	}
	f := s.nodes[s.node(i)].fill[s.key(i)]
	if s.now-f >= s.cacheTTL || (f < s.pushedAt && !s.renewed(i)) {
		return false
	}
	return s.target == 0 || s.cl[i].epoch < s.target || f >= s.changeAt
}

// fetch sends one fetch attempt of client i to its node: an answer from
// the node cache, or an origin call. The first lookup of a need that
// misses is an intended origin call.
func (s *sim) fetch(i int) {
	s.series.Requests[s.sec()]++
	if s.slow != nil && s.node(i) == s.slow.node && !s.slowAdmit(i) {
		return
	}
	first := s.cl[i].flags&fLooked == 0
	s.cl[i].flags |= fLooked
	if s.cached(i) {
		s.lookup(i, true)
		s.setAct(i, aFetchHit, s.now+s.nodeLat)
		return
	}
	s.lookup(i, false)
	if s.prot != nil && s.serveStale(i) {
		s.setAct(i, aFetchHit, s.now+s.nodeLat)
		return
	}
	if first {
		s.intended++
	}
	s.cl[i].flags &^= fDenied
	if s.prot != nil && !s.gate(i, aFetchOrigin, aFetchErr, s.rlat, s.fetchLane(i)) {
		return
	}
	s.fetchOrigin(i)
}

// gate passes an origin call of client i through the nodes' origin guard
// (limiter/origin: a token of the origin budget, held until due up to
// originMaxWait and never past the caller's deadline): refused, the node
// answers with when to come back (a 503 with Retry-After), scheduling the
// refusal as action refused; held, action held sends the call later, with
// what is left of the caller's time. It reports whether the call may go
// now.
//
// The guard's decision takes lat (the coordination calls' latency before
// it: RedisSpec.Latency for each) to have its effect: a held or refused
// call waits that much longer, counted against the caller's deadline. In
// an outage under FailClosed the guard's budget fails: the node answers
// 503 without a hint, and the client backs off on its own.
func (s *sim) gate(i int, held, refused uint8, lat int64, lane originguard.Lane) bool {
	h, err := s.prot.reserveOrigin(s.ctx, s.now, time.Duration(s.org.timeout-lat), lane)
	if err != nil {
		if !s.tolerate(err) {
			s.fail(err)
			return false
		}
		s.prot.holds[i] = originguard.Hold{}
		s.setAct(i, refused, s.now+s.nodeLat+lat)
		return false
	}
	h.Wait += time.Duration(lat) // callOrigin counts it against the deadline
	s.prot.holds[i] = h
	switch {
	case !h.Allowed:
		s.denied(i, h.RetryAfter)
		s.setAct(i, refused, s.now+s.nodeLat+lat)
		return false
	case h.Wait > 0:
		s.setAct(i, held, s.now+int64(h.Wait))
		return false
	}
	return true
}

// fetchLane is the origin guard's lane for client i's fetch: with
// protection.headroom, Background for the refetch the storm caused (an
// affected client that has applied the change and holds no data of it
// yet), Foreground for a page view's; without it, Foreground (a fixed
// budget keeps today's single lane).
func (s *sim) fetchLane(i int) originguard.Lane {
	if s.prot.room != nil && s.target > 0 && s.cl[i].flags&fPending != 0 && s.cl[i].epoch >= s.target {
		return originguard.Background
	}
	return originguard.Foreground
}

// stormLane is the lane of a session's origin call: the reconnects a
// storm causes are Background with protection.headroom.
func (s *sim) stormLane() originguard.Lane {
	if s.prot.room != nil {
		return originguard.Background
	}
	return originguard.Foreground
}

func (s *sim) fetchOrigin(i int) {
	if s.hotKey >= 0 && s.key(i) == s.hotKey {
		s.series.HotKeyCalls[s.sec()]++
	}
	t, ok := s.callOrigin(i)
	if ok {
		s.setAct(i, aFetchOK, t)
	} else {
		s.setAct(i, aFetchErr, t)
	}
}

func (s *sim) sessionOrigin(i int) {
	t, ok := s.callOrigin(i)
	switch {
	case ok:
		s.setAct(i, aConnOK, t)
	case s.policy == polNone:
		// The naive client's reaction to the failure is known now: the
		// fixed delay after it. Scheduling that reaction directly (the
		// error counted in the second it will happen) spares a reconnect
		// storm half its events. It changes no metric, only the order of
		// events at the same microsecond (the reconnect is queued
		// earlier) and, for a client the trigger drops while its attempt
		// is under way, an error counted that the old path dropped: a
		// disconnected client has nothing else pending.
		s.connFailed(i, ceilMicro(t))
	default:
		s.setAct(i, aConnErr, t)
	}
}

// denied records a refusal of client i by the origin guard, which told
// it to come back after wait (a coarse hint, in whole milliseconds).
func (s *sim) denied(i int, wait time.Duration) {
	s.cl[i].flags |= fDenied
	s.cl[i].hint = uint32(min(wait.Milliseconds()+1, hintExact-1))
}

// told records a refusal of client i whose answer the client read as h
// (Slot or Coarse; see toldHint).
func (s *sim) told(i int, h clientcore.Hint) {
	s.cl[i].flags |= fDenied
	s.cl[i].hint = uint32(min(h.Wait.Milliseconds(), hintExact-1))
	if h.Kind == clientcore.Slot {
		s.cl[i].hint |= hintExact
	}
}

// callOrigin sends client i's call to the origin and returns when its
// caller learns the outcome. In a protected run the call went through the
// guard: its hold counts against the caller's deadline (the origin gets
// the timeout less the hold), and its outcome, which the fluid origin
// knows at once, is recorded with the guard at the call's completion (a
// sysRecord event), when a real node would learn it: a headroom
// controller learns of a timeout when its caller does.
func (s *sim) callOrigin(i int) (int64, bool) {
	var h originguard.Hold
	if s.prot != nil {
		h = s.prot.holds[i]
		s.prot.holds[i] = originguard.Hold{}
	}
	return s.sendOrigin(h)
}

// sendOrigin sends an origin call now whose guard decision was h (the
// zero Hold when unguarded; its wait is counted against the caller's
// deadline) and returns when its caller learns the outcome, recording the
// outcome with the guard then.
func (s *sim) sendOrigin(h originguard.Hold) (int64, bool) {
	sec := s.sec()
	s.originCalls++
	s.series.OriginCalls[sec]++
	timeout := s.org.timeout - int64(h.Wait)
	t, out, wait, waste := s.org.call(s.now, timeout)
	if h.Allowed {
		k := s.prot.park(h, outcomes[out], time.Duration(t-s.now))
		s.push(event{at: t, id: k, kind: evSystem, arg: sysRecord})
	}
	s.series.QueueDelay[sec] = max(s.series.QueueDelay[sec], wait/1e9)
	if waste {
		s.wasted++
	}
	if out != served {
		s.series.OriginErrors[sec]++
		return t, false
	}
	return t, true
}

// outcomes maps the origin model's outcomes to the guard's.
var outcomes = [...]originguard.Outcome{served: originguard.Success, timedOut: originguard.Timeout, rejected: originguard.Overload}

func (s *sim) action(i int, a uint8) {
	if a >= aSyn && a <= aSynLast {
		k := int(a-aSyn) + 1 // the SYN retransmit
		s.offer(i, s.now-synAt(0, k), k)
		return
	}
	sec := s.sec()
	switch a {
	case aFetch:
		if s.cl[i].flags&fConn != 0 && s.cl[i].needAt >= 0 {
			s.fetch(i)
		}
	case aFetchOK, aFetchHit:
		s.series.Goodput[sec]++
		if a == aFetchOK && s.cacheTTL > 0 {
			s.nodes[s.node(i)].fill[s.key(i)] = s.now
		}
		s.cl[i].flags = s.cl[i].flags&^fDenied | fCopy
		s.cl[i].fails = 0
		if s.cl[i].needAt >= 0 {
			s.hist.add(s.now - s.cl[i].needAt)
			s.series.addLatency(sec, s.now-s.cl[i].needAt)
			s.cl[i].needAt = -1
		}
		if s.cli != nil {
			s.cli.success(i)
		}
		s.tryConverge(i)
	case aFetchErr:
		s.series.Errors[sec]++
		if s.cl[i].flags&fDenied != 0 {
			s.series.Refused[sec]++
		}
		s.failed(i)
		denied := s.cl[i].flags&fDenied != 0
		if s.sc.Client.DisconnectOnError && (s.policy == polNone || !denied) {
			s.disconnect(i)
			return
		}
		if s.cli == nil {
			s.setAct(i, aFetch, s.now+s.retryDelay)
			return
		}
		wait, ok := s.cli.retry(i, s.attempt(i), s.hint(i, true))
		if !ok {
			return // the retry budget says no: the next page view asks again
		}
		s.setAct(i, aFetch, s.now+wait)
	case aConnect:
		s.connect(i)
	case aHandshake:
		s.handshake(i)
	case aFetchOrigin:
		s.fetchOrigin(i)
	case aSessionOrigin:
		s.sessionOrigin(i)
	case aConnOK:
		s.cl[i].flags |= fConn
		s.connected++
		s.cl[i].fails = 0
		if s.cl[i].flags&fReconnect != 0 {
			s.cl[i].flags &^= fReconnect
			if s.sc.Trigger.Kind == KindReconnectStorm {
				s.series.Changed[sec]++ // the reconnection is the change
			}
		}
		if s.prot == nil {
			if s.cl[i].epoch < s.curEpoch {
				s.invalidate(i, s.curEpoch, false)
			}
		} else {
			s.connectDue(i)
		}
		if s.cl[i].flags&fRefresh != 0 {
			s.applyRefresh(i)
		}
		if s.cl[i].flags&fCopy == 0 {
			s.need(i)
		}
		s.tryConverge(i)
	case aConnErr:
		s.connFailed(i, s.now)
	}
}

// connFailed records client i's failed reconnect attempt at virtual time
// at (now, or later for a failure known in advance): an error in at's
// second, one more failure, and the next attempt after the policy's wait.
func (s *sim) connFailed(i int, at int64) {
	if sec := int(at / int64(time.Second)); sec < len(s.series.Errors) {
		s.series.Errors[sec]++
		if s.cl[i].flags&fDenied != 0 {
			s.series.Refused[sec]++
		}
	}
	s.failed(i)
	wait := s.retryWait(i, true)
	// A refusal (admission's slot, the origin guard's Retry-After) is a
	// 503 on an open connection: a client that comes back within the
	// idle timeout sends its next attempt on it, with no new handshake.
	s.cl[i].flags &^= fKeep
	if s.cl[i].flags&fDenied != 0 && wait < keepIdle {
		s.cl[i].flags |= fKeep
	}
	s.setAct(i, aConnect, at+wait)
}

// connect makes one reconnect attempt of client i: its node's accept
// queue takes it (the handshake) or drops it (the connect fails at the
// connect timeout); a handshake done, handshake goes on. A client that
// still holds the connection a refusal left open goes on at once.
func (s *sim) connect(i int) {
	sec := s.sec()
	s.series.Reconnects[sec]++
	s.series.Requests[sec]++
	keep := s.cl[i].flags&fKeep != 0
	s.cl[i].flags &^= fDenied | fKeep
	if keep {
		s.handshake(i) // the connection is open
		return
	}
	s.cl[i].node = s.route(i)
	s.offer(i, s.now, 0)
}

// offer offers client i's connect attempt, started at start, to its
// node's accept queue: SYN k (0 the first, then the kernel's retransmits).
// Taken, the handshake follows; dropped, the kernel retransmits the SYN
// while the connect timeout allows, and the connect fails at the timeout.
func (s *sim) offer(i int, start int64, k int) {
	nd := &s.nodes[s.node(i)]
	if !nd.up {
		s.setAct(i, aConnErr, s.now+s.nodeLat) // connection refused
		return
	}
	if done, ok := s.acc.accept(&nd.acc, s.now); ok {
		s.setAct(i, aHandshake, done)
		return
	}
	deadline := start + s.acc.timeout
	if next := synAt(start, k+1); k < synRetries && next < deadline {
		s.setAct(i, aSyn+uint8(k), next)
		return
	}
	if s.policy == polNone {
		// Known now, as in sessionOrigin: the naive client's next attempt
		// is scheduled directly.
		s.connFailed(i, ceilMicro(deadline))
		return
	}
	s.setAct(i, aConnErr, deadline)
}

// handshake goes on with client i's connect attempt once its node has
// done the handshake: in a protected run, admission and the origin
// budget, then a session set up at the origin. Refused or admitted, the
// attempt has cost the node its handshake.
func (s *sim) handshake(i int) {
	sec := s.sec()
	if !s.nodes[s.node(i)].up {
		s.setAct(i, aConnErr, s.now+s.nodeLat) // the node went down meanwhile
		return
	}
	if s.prot != nil {
		o, err := s.prot.admit(s.ctx, i)
		if err != nil && !s.tolerate(err) {
			s.fail(err)
			return
		}
		// Refused, or (FailClosed in a Redis outage) unavailable: either
		// is a 503 that says when to come back.
		if o.Verdict == serverside.Refuse || err != nil {
			s.told(i, toldHint(o.RetryAfter, o.Exact))
			s.series.ReconnectsRefused[sec]++ // in the attempt's second, as Reconnects
			s.setAct(i, aConnErr, s.now+s.nodeLat+s.rlat)
			return
		}
		// Two calls before the session goes on: admission, then the
		// origin budget.
		if !s.gate(i, aSessionOrigin, aConnErr, 2*s.rlat, s.stormLane()) {
			if s.cl[i].flags&fDenied != 0 {
				s.series.ReconnectsRefused[sec]++
			}
			return
		}
	}
	s.sessionOrigin(i)
}

func (s *sim) directive(i int, arg uint8) {
	if s.cl[i].flags&fConn == 0 {
		return // a disconnected client learns on reconnecting
	}
	switch arg {
	case dirInvalidate:
		if s.cl[i].epoch < s.curEpoch {
			s.invalidate(i, s.curEpoch, true)
		}
	case dirRefresh:
		if s.cl[i].flags&fRefresh != 0 {
			s.applyRefresh(i)
		}
	case dirDue:
		if s.cl[i].epoch < s.target {
			s.pushOne(i)
		}
	}
}

// connectDue is the session handshake of a client that just connected:
// its node asks its Notifier and the client applies what it is told, with no
// reload (its session is new). These few notices do not draw on the push
// budget: the client was away when its wave was pushed.
func (s *sim) connectDue(i int) {
	ep, err := s.prot.due(s.ctx, s.node(i), i, s.cl[i].epoch)
	if err != nil {
		if !s.tolerate(err) {
			s.fail(err)
		}
		return
	}
	if ep > s.cl[i].epoch {
		s.invalidate(i, ep, false)
	}
}

// pollDue is the pull path of a page view: the node asks its Notifier
// for client i and, when a notice is due, delivers it through its Pusher, so
// that it draws on the fleet-wide push budget like every push (a notice
// the budget defers reaches the client at a later push).
//
// With RedisSpec.Latency the notice reaches the client that much later
// (dirDue): the page view itself is answered meanwhile.
func (s *sim) pollDue(i int) {
	ep, err := s.prot.due(s.ctx, s.node(i), i, s.cl[i].epoch)
	if err != nil {
		if !s.tolerate(err) {
			s.fail(err)
		}
		return
	}
	if ep > s.cl[i].epoch {
		if s.rlat > 0 {
			s.push(event{at: s.now + s.rlat, id: uint32(i), kind: evDirective, arg: dirDue})
			return
		}
		s.pushOne(i)
	}
}

// pushOne delivers client i's due notice through its node's Pusher.
func (s *sim) pushOne(i int) {
	if err := s.prot.pushes.one(s, i); err != nil && !s.tolerate(err) {
		s.fail(err)
	}
}

// invalidate applies an invalidation of epoch ep at client i: it drops its
// copy and refetches; with ReconnectOnInvalidate and reload, it reloads
// first (a client applying a notice while it reconnects needs no second
// reload).
func (s *sim) invalidate(i int, ep uint64, reload bool) {
	s.cl[i].epoch = ep
	s.series.Changed[s.sec()]++
	s.cl[i].flags &^= fCopy
	if reload && s.sc.Client.ReconnectOnInvalidate {
		if s.cl[i].needAt < 0 { // the need opens now; its fetch waits for the new session
			s.cl[i].needAt = s.now
			s.cl[i].flags &^= fLooked
		}
		s.clearAct(i)
		s.reload(i)
		return
	}
	s.need(i)
}

func (s *sim) applyRefresh(i int) {
	s.cl[i].flags &^= fRefresh | fCopy
	s.cl[i].epoch = 1
	s.series.Changed[s.sec()]++
	s.cl[i].needAt = -1 // new content: a new need
	s.clearAct(i)
	s.need(i)
}

// tryConverge marks client i converged if it was affected and now holds
// data of the change, connected.
func (s *sim) tryConverge(i int) {
	f := s.cl[i].flags
	if f&fPending == 0 || f&(fConn|fCopy) != fConn|fCopy || f&(fRefresh|fReconnect) != 0 || s.cl[i].epoch < s.target {
		return
	}
	s.cl[i].flags &^= fPending
	s.unconverged--
	s.lastConverge = s.now
}
