package headroom

import (
	"math"
	"slices"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter/origin"
)

// simOrigin is a fluid FIFO queue in front of an origin that serves
// capacity calls per second, each in base plus its wait in the queue. A
// call that would wait longer than timeout times out (it is recorded after
// timeout and never served); one that finds maxQueue calls queued is
// refused at once as an overload. With failing set, every call fails
// after base.
type simOrigin struct {
	capacity float64
	base     time.Duration
	timeout  time.Duration
	maxQueue float64
	failing  bool
	q        float64       // calls queued
	at       time.Duration // offset in the current step the queue was last drained at
}

// drain serves the queue for d.
func (o *simOrigin) drain(d time.Duration) { o.q = math.Max(0, o.q-o.capacity*d.Seconds()) }

// pending is an outcome a node records when its call ends.
type pending struct {
	at  time.Duration // sim time
	lat time.Duration
	out origin.Outcome
}

// simNode issues its share of the demand, at most its share of the limit,
// and records every outcome (refusals too) into its Origin.
type simNode struct {
	o              *Origin
	nodes          int
	credit, refuse float64
	ends           []pending
}

// simRun drives nodes against one simOrigin in virtual time, in steps of
// dt, moving clk, and samples the limit each node applies every interval.
type simRun struct {
	clk      *fakeclock.Clock
	org      simOrigin
	nodes    []*simNode
	interval time.Duration
	now      time.Duration
	// trace[i][j] is node j's limit (calls/s) after interval i+1, read
	// just after the interval's timers ran.
	trace [][]float64
}

const simStep = 10 * time.Millisecond

// run simulates d more, with demand (calls/s, the whole fleet's) and the
// origin's capacity given as functions of the simulated time.
func (r *simRun) run(d time.Duration, demand, capacity func(time.Duration) float64) {
	end := r.now + d
	for r.now < end {
		r.org.capacity = capacity(r.now)
		dt := simStep.Seconds()
		for _, n := range r.nodes {
			for len(n.ends) > 0 && n.ends[0].at <= r.now {
				e := n.ends[0]
				n.ends = n.ends[1:]
				n.o.Record(origin.Foreground, e.lat, e.out)
			}
		}
		for _, n := range r.nodes {
			share := demand(r.now) / float64(n.nodes) * dt
			allowed := n.o.Limit().Rate / float64(n.nodes) * dt
			n.credit += math.Min(share, allowed)
			n.refuse += math.Max(0, share-allowed)
		}
		// Nodes take turns call by call, so that none is always first in
		// the queue, and the calls of a step arrive evenly spread over it.
		total := 0
		for _, n := range r.nodes {
			total += int(n.credit)
		}
		i := 0
		for more := true; more; {
			more = false
			for _, n := range r.nodes {
				if n.credit >= 1 {
					n.credit--
					at := time.Duration(float64(simStep) * float64(i) / float64(total))
					r.org.drain(at - r.org.at)
					r.org.at = at
					n.end(r.org.call(r.now + at))
					i++
					more = true
				}
			}
		}
		r.org.drain(simStep - r.org.at)
		r.org.at = 0
		for _, n := range r.nodes {
			for n.refuse >= 1 {
				n.refuse--
				n.o.Record(origin.Foreground, 0, origin.Refused)
			}
		}
		r.now += simStep
		r.clk.Add(simStep)
		if r.now%r.interval == 0 {
			row := make([]float64, len(r.nodes))
			for j, n := range r.nodes {
				row[j] = n.o.Limit().Rate
			}
			r.trace = append(r.trace, row)
		}
	}
}

// call sends one call at now and returns how it ends.
func (o *simOrigin) call(now time.Duration) pending {
	switch {
	case o.failing:
		return pending{at: now + o.base, lat: o.base, out: origin.Failure}
	case o.q >= o.maxQueue:
		return pending{at: now, lat: 0, out: origin.Overload}
	}
	wait := time.Duration(o.q / o.capacity * float64(time.Second))
	if wait > o.timeout {
		return pending{at: now + o.timeout, lat: o.timeout, out: origin.Timeout}
	}
	o.q++
	lat := o.base + wait
	return pending{at: now + lat, lat: lat, out: origin.Success}
}

// end files e among the node's outcomes to record, in time order.
func (n *simNode) end(e pending) {
	i := len(n.ends)
	for i > 0 && n.ends[i-1].at > e.at {
		i--
	}
	n.ends = slices.Insert(n.ends, i, e)
}
