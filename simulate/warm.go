package simulate

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	originguard "github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// zipfKeys draws each client's key from a Zipf law of exponent
// node.zipf over node.keys keys (key k with weight 1 ÷ (k+1)^s), from a
// stream of its own so that the other draws of the run stay as they are;
// nil without node.zipf, when key(i) is the fixed hash.
func zipfKeys(sc *Scenario) []uint32 {
	z := sc.Node.Zipf
	if z == 0 {
		return nil
	}
	cdf := make([]float64, sc.Node.Keys)
	var sum float64
	for k := range cdf {
		sum += math.Pow(float64(k+1), -z)
		cdf[k] = sum
	}
	rng := rand.New(rand.NewPCG(sc.Seed, 0x21bf))
	keys := make([]uint32, sc.Clients)
	for i := range keys {
		u := rng.Float64() * sum
		k, _ := slices.BinarySearch(cdf, u)
		keys[i] = uint32(min(k, len(cdf)-1))
	}
	return keys
}

// popularity returns the keys of the clients on node (-1: every client)
// hottest first (most clients, then the lower key), keys no client reads
// left out, and the fewest of them that carry 90% of those clients.
func (s *sim) popularity(node int) (order []uint32, key90 int) {
	counts := make([]int, s.keys)
	total := 0
	for i := range s.cl {
		if node < 0 || s.node(i) == node {
			counts[s.key(i)]++
			total++
		}
	}
	for k, c := range counts {
		if c > 0 {
			order = append(order, uint32(k))
		}
	}
	slices.SortStableFunc(order, func(a, b uint32) int { return cmp.Compare(counts[b], counts[a]) })
	sum := 0
	for n, k := range order {
		sum += counts[k]
		if float64(sum) >= 0.9*float64(total) {
			return order, n + 1
		}
	}
	return order, len(order)
}

// lookup counts a fetch's node cache lookup of client i in the node hit
// rate (Series.Lookups, Fresh), for the node the trigger watches.
func (s *sim) lookup(i int, fresh bool) {
	if s.watch >= 0 && s.node(i) != s.watch {
		return
	}
	sec := s.sec()
	s.series.Lookups[sec]++
	if fresh {
		s.series.Fresh[sec]++
	}
}

// serveStale reports whether client i's node, in a protected run, answers
// a fetch its cache cannot serve fresh with a stale entry (RFC 5861's
// stale-while-revalidate, as warmup/fill serves it): after a content
// push, an entry of the old content within its TTL while the warm
// refetches it; with a fill lease, an entry expired less than one TTL ago,
// whose refresh the lease starts unless another node holds it.
func (s *sim) serveStale(i int) bool {
	k := s.key(i)
	f := s.nodes[s.node(i)].fill[k]
	age := s.now - f
	switch {
	case s.pushedAt != math.MinInt64:
		return f < s.pushedAt && age < s.cacheTTL
	case s.lease != nil:
		if f == noFill || age < s.cacheTTL || age >= 2*s.cacheTTL {
			return false
		}
		s.fillStart(k)
		return true
	}
	return false
}

// warmTrigger fires content-push, cold-node and hot-key, and starts their
// protection in a protected run.
func (s *sim) warmTrigger() {
	sc := s.sc
	switch sc.Trigger.Kind {
	case KindContentPush:
		// Every entry filled before now holds the old content.
		s.pushedAt = s.now
		for k := range s.nodes {
			s.nodes[k].renewed = make([]bool, s.keys)
		}
		if s.prot != nil {
			s.startWarm(-1)
		}
	case KindColdNode:
		k := sc.Trigger.Node
		for j := range s.nodes[k].fill {
			s.nodes[k].fill[j] = noFill
		}
		if s.prot != nil {
			g, err := slowstart.New(slowstart.Config{Window: sc.Protection.SlowStart.D(), Clock: s.prot.st.clock.lend(),
				Salt: fmt.Sprintf("node-%d", k)})
			if err != nil {
				s.fail(fmt.Errorf("slow start: %w", err))
				return
			}
			s.slow = &slowGate{g: g, node: k}
			s.startWarm(k)
		}
	case KindHotKey:
		order, _ := s.popularity(-1)
		if len(order) == 0 {
			return
		}
		s.hotKey = int(order[0])
		// It expires on every node now: each holds it, just past its TTL.
		for k := range s.nodes {
			s.nodes[k].fill[s.hotKey] = s.now - s.cacheTTL
		}
		if s.prot != nil {
			s.lease = &leases{until: make([]int64, s.keys), ok: make([]bool, s.keys), holds: make([]originguard.Hold, s.keys)}
		}
	}
}

// slowGate is the replaced node's slow start: warmup/slowstart's Gate on
// the virtual clock, asked for every fetch the node receives.
type slowGate struct {
	g    *slowstart.Gate
	node int
}

// slowAdmit asks the replaced node's slow start for client i's fetch: shed,
// the node answers 503 with the gate's Retry-After (a refusal with a
// coarse hint, as httpmw.SlowStart sends it), and it reports false.
func (s *sim) slowAdmit(i int) bool {
	d, err := s.slow.g.Admit(s.ctx, s.id(i))
	if err != nil {
		s.fail(fmt.Errorf("slow start: %w", err))
		return false
	}
	if d.Admitted {
		return true
	}
	s.denied(i, d.RetryAfter)
	s.setAct(i, aFetchErr, s.now+s.nodeLat)
	return false
}

// warmer is the schedule of warmup.Warmer, which runs on real time and
// its own goroutines and so cannot be stepped in virtual time: the rule it
// implements, modelled here. The keys, hottest first, are cut into chunks
// of Protection.WarmChunk; each warming node runs Protection.WarmWorkers
// workers, each claiming the lowest chunk not yet claimed (no node dies,
// so no claim expires) and fetching its keys in order, one at a time, so
// that each key is fetched once across the fleet. Every fetch takes the
// origin guard's Background lane (the real guard; with protection.headroom
// paced by the spare capacity), and a refused one comes back after the
// guard's Retry-After. A fetch that fails is tried again as warmup does
// (3 times, after 100 ms doubled each time), then the key is reported
// failed: counted (Result.WarmKeysFailed), never silently dropped. A
// fetched key is stored add-only (warmup's rule: never over a value
// fresher than the fetch). After a content push it renews the
// stale entries the nodes hold and keeps their expiry (as Redis's SET
// with KEEPTTL does), so that the entries' expiries stay spread as they
// were: stored with a new TTL, everything the warm fetched in a minute
// would expire in the same minute, a herd of misses one TTL later. A
// node that holds nothing of a key fetches it when asked, as before. A
// node warmed from empty (cold-node) gets every key, each stored with the
// TTL shortened by a random share of up to half (from a stream of its
// own), for the same reason.
type warmer struct {
	order   []uint32 // the keys, hottest first
	key90   int      // the fewest of them that carry 90% of the clients
	chunk   int
	next    int   // the next chunk to claim
	nodes   []int // the nodes each fetched key fills
	all     bool  // fill every entry of nodes, not only those they hold
	workers []warmWorker
	done    int   // keys warmed
	doneAt  int64 // when the last was; -1: not yet
	failed  int64 // fetches that failed
	// keysFailed counts the keys reported failed after warmRetries
	// retries.
	keysFailed int64
	rng        *rand.Rand
}

// warmWorker is one worker: the key it fetches and its guard decision.
type warmWorker struct {
	pos, end int // its chunk's next position and end in order; pos == end: none
	sent     int64
	ok, held bool
	tries    int // failed fetches of the current key
	h        originguard.Hold
}

// startWarm starts the warm of node's keys (-1: of every node, the
// fetched values filling every node's cache, as a store the fleet shares).
func (s *sim) startWarm(node int) {
	p := s.sc.Protection
	m := &warmer{chunk: p.WarmChunk, doneAt: -1, rng: rand.New(rand.NewPCG(s.sc.Seed, 0x3a73))}
	m.order, m.key90 = s.popularity(node)
	n := s.sc.Nodes
	if node >= 0 {
		m.nodes, n, m.all = []int{node}, 1, true
	} else {
		for k := range s.sc.Nodes {
			m.nodes = append(m.nodes, k)
		}
	}
	m.workers = make([]warmWorker, n*p.WarmWorkers)
	s.warm = m
	for w := range m.workers {
		s.push(event{at: s.now, id: uint32(w), kind: evSystem, arg: sysWarm})
	}
}

// warmup.Config's defaults for a failed fetch: tried again Retries times,
// after RetryBackoff doubled each time, then reported failed.
const (
	warmRetries      = 3
	warmRetryBackoff = 100 * time.Millisecond
)

// next1 moves worker wk past its key, fetched or reported failed, at now.
func (m *warmer) next1(wk *warmWorker, now int64) {
	wk.pos++
	wk.tries = 0
	m.done++
	if m.done == len(m.order) {
		m.doneAt = now
	}
}

// warmStep is worker w's next step: claim a chunk if it has none, then
// send its key's fetch through the guard's Background lane, or come back
// when the guard says.
func (s *sim) warmStep(w int) {
	m := s.warm
	wk := &m.workers[w]
	if wk.pos == wk.end {
		c := m.next
		if c*m.chunk >= len(m.order) {
			return // nothing left to claim: the worker is done
		}
		m.next++
		wk.pos, wk.end = c*m.chunk, min((c+1)*m.chunk, len(m.order))
	}
	if wk.held {
		wk.held = false
		s.warmSend(w, wk.h)
		return
	}
	h, err := s.prot.reserveOrigin(s.ctx, s.now, time.Duration(s.org.timeout-s.rlat), originguard.Background)
	if err != nil {
		if !s.tolerate(err) {
			s.fail(err)
			return
		}
		s.push(event{at: s.now + int64(time.Second), id: uint32(w), kind: evSystem, arg: sysWarm})
		return
	}
	switch {
	case !h.Allowed:
		s.push(event{at: s.now + s.rlat + int64(h.RetryAfter), id: uint32(w), kind: evSystem, arg: sysWarm})
	case h.Wait > 0 || s.rlat > 0:
		h.Wait += time.Duration(s.rlat)
		wk.held, wk.h = true, h
		s.push(event{at: s.now + int64(h.Wait), id: uint32(w), kind: evSystem, arg: sysWarm})
	default:
		s.warmSend(w, h)
	}
}

// warmSend sends worker w's fetch.
func (s *sim) warmSend(w int, h originguard.Hold) {
	wk := &s.warm.workers[w]
	wk.sent = s.now
	if wk.tries == 0 {
		s.intended++ // the warm's work: each key once
	}
	s.series.WarmCalls[s.sec()]++
	t, ok := s.sendOrigin(h)
	wk.ok = ok
	s.push(event{at: t, id: uint32(w), kind: evSystem, arg: sysWarmDone})
}

// warmDone ends worker w's fetch: a value fills the warmed nodes' entries
// older than the fetch (add-only), and the worker goes on with its next
// key; a failure is tried again, or reported (see warmer).
func (s *sim) warmDone(w int) {
	m := s.warm
	wk := &m.workers[w]
	if wk.ok {
		k := m.order[wk.pos]
		for _, n := range m.nodes {
			nd := &s.nodes[n]
			switch f := &nd.fill[k]; {
			case *f >= wk.sent:
				// A fresher value is there: add-only leaves it.
			case m.all:
				*f = s.now - int64(m.rng.Float64()*float64(s.cacheTTL)/2)
			case s.now-*f < s.cacheTTL && *f < s.pushedAt:
				nd.renewed[k] = true
			}
		}
		m.next1(wk, s.now)
	} else {
		m.failed++
		wk.tries++
		if wk.tries <= warmRetries {
			// warmup's retry: after RetryBackoff, doubled each time.
			s.push(event{at: s.now + int64(warmRetryBackoff)<<(wk.tries-1), id: uint32(w), kind: evSystem, arg: sysWarm})
			return
		}
		m.keysFailed++ // reported failed: counted, not dropped
		m.next1(wk, s.now)
	}
	s.warmStep(w)
}

// leases are the fleet's fill leases (warmup/fill's NewShared rule with
// SharedConfig.Handoff, modelled: its lease lives in Redis on real time):
// per key, until when a node holds it, whether its fill succeeded, and
// the fill's guard decision while held. A node that needs a key refreshed
// takes the lease unless another node holds one in force; the holder
// fetches, and on release the value reaches every node's cache (the
// handoff) and the lease is free.
type leases struct {
	until []int64
	ok    []bool
	holds []originguard.Hold
}

// fillStart takes key k's lease, if no node holds it, and starts its
// fill: one origin call through the guard's Foreground lane (the fill of
// a user's request).
func (s *sim) fillStart(k int) {
	l := s.lease
	if l.until[k] > s.now {
		return // another node holds it: serve stale
	}
	l.until[k] = s.now + int64(s.sc.Protection.FillLease)
	s.intended++ // the refresh of the need served stale
	h, err := s.prot.reserveOrigin(s.ctx, s.now, time.Duration(s.org.timeout-s.rlat), originguard.Foreground)
	if err != nil {
		if !s.tolerate(err) {
			s.fail(err)
		}
		l.until[k] = s.now
		return
	}
	switch {
	case !h.Allowed:
		l.until[k] = s.now // released: the next request tries again
	case h.Wait > 0 || s.rlat > 0:
		h.Wait += time.Duration(s.rlat)
		l.holds[k] = h
		s.push(event{at: s.now + int64(h.Wait), id: uint32(k), kind: evSystem, arg: sysFillCall})
	default:
		s.fillSend(k, h)
	}
}

// fillCall sends key k's fill once the guard's hold is over.
func (s *sim) fillCall(k int) {
	h := s.lease.holds[k]
	s.lease.holds[k] = originguard.Hold{}
	s.fillSend(k, h)
}

func (s *sim) fillSend(k int, h originguard.Hold) {
	if k == s.hotKey {
		s.series.HotKeyCalls[s.sec()]++
	}
	t, ok := s.sendOrigin(h)
	s.lease.ok[k] = ok
	s.push(event{at: t, id: uint32(k), kind: evSystem, arg: sysFill})
}

// fillDone ends key k's fill: the value refreshes every node's entry, and
// the lease is released either way.
func (s *sim) fillDone(k int) {
	if s.lease.ok[k] {
		for n := range s.nodes {
			s.nodes[n].fill[k] = s.now
		}
	}
	s.lease.until[k] = s.now
}

// warmKind reports whether the trigger is one about the node caches:
// content-push or cold-node.
func (s *Scenario) warmKind() bool {
	return s.Trigger.Kind == KindContentPush || s.Trigger.Kind == KindColdNode
}

// warmWork is the least origin work that restores the caches after the
// trigger, for Result.SettleS: each key fetched once (content-push,
// cold-node); 0 for the other triggers. A fleet that refetches each key
// once per node does more, and fails longer, by its own doing.
func (s *Scenario) warmWork() float64 {
	if s.warmKind() {
		return float64(s.Node.Keys)
	}
	return 0
}

// warmMetrics computes the warm-up triggers' figures (see Result's
// NodeHitRate to HotKeyLeasePeak); WarmKeys, WarmKey90, WarmDoneS and
// WarmFailed are the run's, set before.
func (r *Result) warmMetrics(sc *Scenario, trig int) {
	s := r.Series
	secs := len(s.OriginCalls)
	var look, fresh float64
	for i := min(10, trig/2); i < trig; i++ {
		look += s.Lookups[i]
		fresh += s.Fresh[i]
	}
	if look > 0 {
		r.NodeHitRate = round6(fresh / look)
	}
	r.Hit90S, r.WarmPhysicalS, r.Hit90OverPhysical = -1, -1, -1
	r.HotKeyFetches, r.HotKeyLeasePeak = -1, -1
	switch {
	case sc.warmKind():
		last := -1 // the last second below 90% before the first at it
		for i := trig; i < secs; i++ {
			if s.Lookups[i] > 0 && s.Fresh[i] >= 0.9*s.Lookups[i] {
				last = i - 1
				break
			}
		}
		if last < 0 {
			return
		}
		r.Hit90S = float64(last + 1 - trig)
		var spare float64
		end := max(last+1, trig+1)
		for i := trig; i < end; i++ {
			spare += sc.Origin.capacityAt(i) - (s.OriginCalls[i] - s.WarmCalls[i])
		}
		spare /= float64(end - trig)
		if spare > 0 {
			r.WarmPhysicalS = round6(float64(r.WarmKey90) / spare)
			r.Hit90OverPhysical = round6(r.Hit90S / r.WarmPhysicalS)
		}
	case sc.Trigger.Kind == KindHotKey:
		ttl := int(sc.Node.CacheTTL.D() / time.Second)
		var n float64
		for i := trig; i < min(secs, trig+max(ttl, 1)); i++ {
			n += s.HotKeyCalls[i]
		}
		r.HotKeyFetches = int64(n)
		w := max(1, int(math.Ceil(sc.Protection.FillLease.Seconds())))
		r.HotKeyLeasePeak = int64(math.Round(windowPeak(s.HotKeyCalls[trig:], w) * float64(w)))
	}
}

// steadyCaches empties, with node.zipf, the node cache entries that
// would be empty in steady state. With skewed keys many entries see their
// key's clients less often than once a TTL: an entry whose node asks for
// it λ times a second (its clients there × the rate at which each
// refetches, client.poll_interval and client.copy_ttl) is live, in steady
// state, a share λT ÷ (1 + λT) of the time (live for the TTL T after each
// fill, then empty until the next request). Each entry starts live with
// that probability, from a stream of its own; a live entry keeps the age
// newSim drew. Without node.zipf every entry starts live, as before.
func (s *sim) steadyCaches() {
	if s.keyOf == nil || s.cacheTTL <= 0 {
		return
	}
	perClient := s.pStale / s.pollMean * float64(s.cacheTTL) // λT of one client
	counts := make([]int32, len(s.nodes)*int(s.keys))
	for i := range s.cl {
		counts[s.node(i)*int(s.keys)+s.key(i)]++
	}
	rng := rand.New(rand.NewPCG(s.sc.Seed, 0x57ea))
	for k := range s.nodes {
		for j, c := range counts[k*int(s.keys) : (k+1)*int(s.keys)] {
			lt := float64(c) * perClient
			if rng.Float64() >= lt/(1+lt) {
				s.nodes[k].fill[j] = noFill
			}
		}
	}
}

// renewed reports whether the warm renewed client i's entry at its node
// after the content push.
func (s *sim) renewed(i int) bool {
	return s.nodes[s.node(i)].renewed[s.key(i)]
}
