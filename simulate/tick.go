package simulate

import (
	"fmt"
	"math"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// startRollout turns the rogue node's "invalidate everything" into a
// rollout on the real coordinator, and sorts the clients by their cohort in
// it (limiter.Cohort, the placement the coordinator documents), so that a
// released cohort's clients can be pushed their notice.
func (s *sim) startRollout() (uint64, error) {
	sc, g := s.sc, s.prot
	k := sc.Trigger.Node
	g.rollout = invalidate.Rollout{
		ID:      "rogue-" + sc.Name,
		Scope:   invalidate.ScopeAll,
		Cohorts: sc.Protection.Cohorts,
		Rate:    sc.Protection.RolloutRate,
		Source:  g.coords[k].Node(),
		Clients: sc.Clients,
	}
	st, err := g.coords[k].Start(s.ctx, g.rollout)
	if err != nil {
		return 0, fmt.Errorf("start rollout: %w", err)
	}
	g.rollout = st.Rollout
	n := g.rollout.Cohorts
	g.cohortAt = make([]int, n+1)
	cohort := make([]uint32, sc.Clients)
	for i := range sc.Clients {
		c := limiter.Cohort(g.rollout.ID, s.id(i), n)
		cohort[i] = uint32(c)
		g.cohortAt[c+1]++
	}
	for c := range n {
		g.cohortAt[c+1] += g.cohortAt[c]
	}
	g.cohortOf = make([]uint32, sc.Clients)
	fill := append([]int(nil), g.cohortAt[:n]...)
	for i, c := range cohort {
		g.cohortOf[fill[c]] = uint32(i)
		fill[c]++
	}
	return st.Rollout.Epoch, nil
}

// tick runs every Protection.Tick: the config change's paced refresh, and
// in a protected run every node's advance of the rollouts, with a push of
// the notice to the clients of each cohort released (spread over one
// cohort interval).
func (s *sim) tick() {
	if s.sc.Trigger.Kind == KindConfigChange {
		s.dispatchRefresh()
	}
	g := s.prot
	if g == nil || g.coords == nil || g.cohortOf == nil || g.released >= g.rollout.Cohorts {
		// No rollout running: an advance would release nothing, so the
		// nodes skip it (and its population-sketch merge).
		return
	}
	// The nodes take turns: one advance per tick across the fleet releases
	// what every node advancing would (the store makes each advance atomic
	// and banks at most one tick of running time), at a tenth of the cost
	// of merging every node's population sketch every tick. Each node's
	// Due cache refreshes from the store on its own (WithCacheTTL).
	c := g.coords[g.turn%len(g.coords)]
	g.turn++
	if err := c.AdvanceAt(s.ctx, at(s.now)); err != nil {
		s.fail(fmt.Errorf("advance: %w", err))
		return
	}
	st, err := g.coords[0].Status(s.ctx, g.rollout.ID)
	if err != nil {
		s.fail(fmt.Errorf("rollout status: %w", err))
		return
	}
	// The pushes of a cohort are spaced evenly over one cohort interval,
	// so that clients change at the rollout's rate, second by second. They
	// start one Due cache TTL after the release: by then every node's Due
	// answers from a state that has it (see invalidate.WithCacheTTL).
	spread := float64(st.CohortInterval)
	start := s.now + int64(invalidate.DefaultCacheTTL)
	for c := g.released; c < st.Released; c++ {
		ids := g.cohortOf[g.cohortAt[c]:g.cohortAt[c+1]]
		for j, i := range ids {
			d := int64(spread * float64(j) / float64(len(ids)))
			s.push(event{at: start + d, id: i, kind: evDirective, arg: dirPush})
		}
	}
	g.released = max(g.released, st.Released)
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
}

func (s *sim) refreshBudget() budget { return s.refreshB }

// dispatchRefresh lets as many clients refresh as the limit allows now,
// spread over the next tick.
func (s *sim) dispatchRefresh() {
	left := len(s.refresh) - s.refreshNext
	if left <= 0 {
		return
	}
	d, err := s.refreshB.TakeUpToAt(s.ctx, "refresh", at(s.now), left)
	if err != nil {
		s.fail(fmt.Errorf("refresh budget: %w", err))
		return
	}
	// Spaced evenly over the tick: the limit's rate, second by second.
	tick := float64(s.sc.Protection.Tick)
	for j := range d.Taken {
		i := s.refresh[s.refreshNext]
		s.refreshNext++
		s.cl[i].flags |= fRefresh
		s.push(event{at: s.now + 1 + int64(tick*float64(j)/float64(d.Taken)), id: i, kind: evDirective, arg: dirRefresh})
	}
}
