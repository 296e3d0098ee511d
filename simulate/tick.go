package simulate

import (
	"context"
	"fmt"
	"math"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// startRollout turns the rogue node's "invalidate everything" into a
// rollout on the real coordinator, started from the rogue node.
func (s *sim) startRollout() (uint64, error) {
	sc, g := s.sc, s.prot
	k := sc.Trigger.Node
	g.rollout = invalidate.Rollout{
		ID:      "rogue-" + sc.Name,
		Scope:   invalidate.ScopeAll,
		Cohorts: sc.Protection.Cohorts,
		Rate:    sc.Protection.RolloutRate,
		By:      g.coords[k].Node(),
		Clients: sc.Clients,
	}
	st, err := g.coords[k].Start(s.ctx, g.rollout)
	if err != nil {
		return 0, fmt.Errorf("start rollout: %w", err)
	}
	g.rollout = st.Rollout
	g.pushes.init(s)
	s.pushFrom = s.now + s.rlat // each push's budget call takes the latency
	s.push(event{at: s.now + int64(sc.Protection.PushInterval) + s.rlat, kind: evSystem, arg: sysPush})
	return st.Rollout.Epoch, nil
}

// tick runs every Protection.Tick: the config change's paced refresh, and
// in a protected run the nodes' advance of the rollouts.
func (s *sim) tick() {
	if s.sc.Trigger.Kind == KindConfigChange {
		s.dispatchRefresh()
	}
	g := s.prot
	if g == nil || g.coords == nil || g.pushes.sessions == nil || g.pushes.full == s.sc.Nodes {
		// No rollout running: an advance would release nothing, so the
		// nodes skip it (and its population-sketch merge).
		return
	}
	// The nodes take turns: one advance per tick across the fleet releases
	// what every node advancing would (the store makes each advance atomic
	// and banks at most one tick of running time), at a tenth of the cost
	// of merging every node's population sketch every tick. Each node's
	// Due cache refreshes from the store on its own (Config.CacheTTL). The
	// coordinators read the virtual clock, which is at s.now. With
	// RedisSpec.Latency the advance is made (and takes effect) that much
	// after the tick.
	if s.rlat > 0 {
		s.push(event{at: s.now + s.rlat, kind: evSystem, arg: sysAdvance})
		return
	}
	s.advanceRollout()
}

// advanceRollout is one node's advance of the rollout, the nodes taking
// turns. An advance that fails in a Redis outage is skipped: the next
// tick's advance makes up for it (the store banks at most one tick).
func (s *sim) advanceRollout() {
	g := s.prot
	c := g.coords[g.turn%len(g.coords)]
	g.turn++
	if err := c.Advance(s.ctx); err != nil && !s.tolerate(err) {
		s.fail(fmt.Errorf("advance: %w", err))
	}
}

// pushAll runs every node's push, starting from a different node each
// push interval so that none is always first at the fleet-wide push
// budget. It reports whether pushes must go on.
func (s *sim) pushAll() bool {
	g := s.prot
	start := int(s.pushes)
	for j := range s.sc.Nodes {
		if err := g.pushes.node(s, (start+j)%s.sc.Nodes); err != nil {
			if s.tolerate(err) {
				continue // in an outage: the next interval's push tries again
			}
			s.fail(err)
			return false
		}
	}
	return !g.pushes.done
}

// pushState is the nodes' side of push delivery: every client's session,
// the candidates of each node (the clients of the waves its pusher
// reported that have not applied them yet), and each node's clients
// indexed by cohort in the rollout, so that a wave's clients are found
// without looking at the others. A node's clients are those it started
// with (client i on node i mod nodes): the invalidation triggers fail no
// node, so the load balancer moves no client while a rollout runs.
type pushState struct {
	sessions []pushSession
	batch    []invalidate.Session
	single   []invalidate.Session
	waves    []invalidate.Wave
	pending  [][]uint32 // per node: candidates, in the order they came
	members  [][]uint32 // per node: clients by cohort
	at       [][]int32  // per node: members[k][at[k][c]:at[k][c+1]] are cohort c
	full     int        // nodes whose pusher reported every cohort
	done     bool       // every cohort reported and pushed on every node
}

func (p *pushState) init(s *sim) {
	n := s.sc.Clients
	p.sessions = make([]pushSession, n)
	for i := range p.sessions {
		p.sessions[i] = pushSession{s: s, i: uint32(i)}
	}
	p.pending = make([][]uint32, s.sc.Nodes)
	p.members = make([][]uint32, s.sc.Nodes)
	p.at = make([][]int32, s.sc.Nodes)
}

// index sorts node k's clients by their cohort in w's rollout (a counting
// sort on Wave.Cohort, the placement AppendDue uses), once per run.
func (p *pushState) index(s *sim, k int, w invalidate.Wave) {
	if p.at[k] != nil {
		return
	}
	nodes := s.sc.Nodes
	cnt := (s.sc.Clients - k + nodes - 1) / nodes
	cohort := make([]int32, cnt)
	at := make([]int32, w.Cohorts+1)
	for j := range cnt {
		c := w.Cohort(s.id(k + j*nodes))
		cohort[j] = int32(c)
		at[c+1]++
	}
	for c := range w.Cohorts {
		at[c+1] += at[c]
	}
	mem := make([]uint32, cnt)
	fill := append([]int32(nil), at[:w.Cohorts]...)
	for j, c := range cohort {
		mem[fill[c]] = uint32(k + j*nodes)
		fill[c]++
	}
	p.members[k], p.at[k] = mem, at
}

// node runs node k's push: the waves its pusher reports become candidates,
// and the candidates are handed to the real Pusher, which asks AppendDue for
// each, draws on the fleet-wide push budget and notifies; the ones it
// deferred stay candidates for the next tick.
func (p *pushState) node(s *sim, k int) error {
	pu := s.prot.pushers[k]
	var err error
	if p.waves, err = pu.AppendWaves(s.ctx, p.waves[:0]); err != nil {
		return fmt.Errorf("push waves: %w", err)
	}
	for _, w := range p.waves {
		p.index(s, k, w)
		mem, at := p.members[k], p.at[k]
		p.pending[k] = append(p.pending[k], mem[at[w.From]:at[w.To]]...)
		if w.To == w.Cohorts {
			p.full++
		}
	}
	// Candidates still waiting: connected, not applied. A disconnected
	// client learns its notice when it reconnects (AppendDue).
	live := p.pending[k][:0]
	p.batch = p.batch[:0]
	for _, i := range p.pending[k] {
		if s.cl[i].flags&fConn != 0 && s.cl[i].epoch < s.target {
			live = append(live, i)
			p.batch = append(p.batch, &p.sessions[i])
		}
	}
	p.pending[k] = live
	if len(p.batch) > 0 {
		if _, err := pu.Push(s.ctx, p.batch); err != nil {
			return fmt.Errorf("push: %w", err)
		}
		if s.err != nil {
			return nil
		}
		live = p.pending[k][:0]
		for _, i := range p.pending[k] {
			if s.cl[i].flags&fConn != 0 && s.cl[i].epoch < s.target {
				live = append(live, i)
			}
		}
		p.pending[k] = live
	}
	if p.full == s.sc.Nodes {
		p.done = true
		for _, q := range p.pending {
			if len(q) > 0 {
				p.done = false
			}
		}
	}
	return nil
}

// one hands client i's session alone to its node's Pusher: a page view
// that found its notice due.
func (p *pushState) one(s *sim, i int) error {
	p.single = append(p.single[:0], &p.sessions[i])
	if _, err := s.prot.pushers[s.node(i)].Push(s.ctx, p.single); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	return nil
}

// pushSession is client i's push channel, as its node's Pusher sees it.
type pushSession struct {
	s *sim
	i uint32
}

// ClientID returns the client's ID.
func (p *pushSession) ClientID() string { return p.s.id(int(p.i)) }

// Applied returns the epoch the client applied.
func (p *pushSession) Applied() uint64 { return p.s.cl[p.i].epoch }

// Notify applies the notice at the client at once: the push is the
// change's moment (the client acknowledges it, and reloads if it does).
func (p *pushSession) Notify(_ context.Context, n invalidate.Notice) error {
	if n.Epoch > p.s.cl[p.i].epoch {
		p.s.invalidate(int(p.i), n.Epoch, true)
	}
	return nil
}

// setupRefresh starts the config change's content push at time zero: the
// affected clients, in a random order, wait for the refresh limit to let
// them refetch.
func (s *sim) setupRefresh() {
	sc := s.sc
	k := int(math.Round(sc.Trigger.Share * float64(sc.Clients)))
	perm := s.rng.Perm(sc.Clients)
	s.refresh = make([]uint32, k)
	for j := range k {
		i := perm[j]
		s.refresh[j] = uint32(i)
		s.cl[i].flags |= fPending
	}
	s.affected, s.unconverged, s.target = k, k, 1
	s.changeAt = 0
}

func (s *sim) refreshBudget() budget { return s.refreshB }

// dispatchRefresh lets as many clients refresh as the limit allows now,
// spread over the next tick.
func (s *sim) dispatchRefresh() {
	left := len(s.refresh) - s.refreshNext
	if left <= 0 {
		return
	}
	d, err := s.refreshB.Take(s.ctx, limiter.Request{Key: "refresh", N: left, UpTo: true})
	if err != nil {
		if !s.tolerate(err) {
			s.fail(fmt.Errorf("refresh budget: %w", err))
		}
		return
	}
	// Spaced evenly over the tick: the limit's rate, second by second.
	tick := float64(s.sc.Protection.Tick)
	for j := range d.Taken {
		i := s.refresh[s.refreshNext]
		s.refreshNext++
		s.cl[i].flags |= fRefresh
		s.push(event{at: s.now + s.rlat + 1 + int64(tick*float64(j)/float64(d.Taken)), id: i, kind: evDirective, arg: dirRefresh})
	}
}
