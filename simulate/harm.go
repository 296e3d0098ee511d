package simulate

import (
	"math"
	"time"
)

// outage is how long the trigger's own outage lasts (Result.OutageS): a
// cold start's downtime; a restarted node's until the load balancer
// notices it is down (Node.HealthCheck) and its clients can reconnect to
// the other nodes, or until it is back, if sooner (its downtime, when it
// is the only node).
func (s *Scenario) outage() time.Duration {
	t := s.Trigger
	switch {
	case t.Kind != KindReconnectStorm:
		return 0
	case t.Cause == "restart" && s.Nodes > 1:
		return min(t.Downtime.D(), s.Node.HealthCheck.D())
	case t.Cause == "restart" || t.Cause == "cold-start":
		return t.Downtime.D()
	}
	return 0
}

// factorAt returns the share of Origin.Capacity the origin has at virtual
// time t, as Origin.Changes make it.
func (o OriginSpec) factorAt(t Duration) float64 {
	for _, c := range o.Changes {
		if t >= c.At && (c.For == 0 || t < c.At+c.For) {
			return c.Factor
		}
	}
	return 1
}

// capacityAt returns the origin's capacity during virtual second sec: its
// Capacity as changed by Origin.Changes (a change that starts within the
// second counts from that second on).
func (o OriginSpec) capacityAt(sec int) float64 {
	t := Duration(time.Duration(sec) * time.Second)
	for _, c := range o.Changes {
		if t+Duration(time.Second) > c.At && (c.For == 0 || t < c.At+c.For) {
			return o.Capacity * c.Factor
		}
	}
	return o.Capacity
}

// harm measures the storm's harm to users (Result.StormS and the fields
// after it): how long it lasted, the share of client requests that failed
// or were refused meanwhile, and the seconds the origin was overloaded. It
// needs ConvergeS, RecoverS and OutageS. The trigger's own outage (a node
// that is down) is not part of the storm: its clients' failed attempts to
// reach it are the same whatever protects the origin.
func (r *Result) harm(sc *Scenario, trig int) {
	s := r.Series
	secs := len(s.OriginCalls)
	from := min(secs, trig+int(math.Ceil(r.OutageS)))
	end := secs
	if r.Converged && r.Recovered {
		last := max(r.ConvergeS, r.RecoverS, r.OutageS+60)
		end = min(secs, trig+int(math.Ceil(last)))
	}
	if sc.warmKind() && r.Hit90S >= 0 && r.Recovered {
		// No client converges: the storm lasts until the node caches
		// serve the new content again.
		end = min(secs, trig+int(math.Ceil(max(r.Hit90S, r.RecoverS, 60))))
	}
	r.StormS = float64(end - from)
	var reqs, errs, refused float64
	for i := from; i < end; i++ {
		reqs += s.Requests[i]
		errs += s.Errors[i]
		refused += s.Refused[i]
	}
	r.StormRequests = int64(reqs)
	if reqs > 0 {
		r.StormFailedShare = round6((errs - refused) / reqs)
		r.StormRefusedShare = round6(refused / reqs)
	}
	for i := trig; i < secs; i++ {
		if s.OriginCalls[i] > sc.Origin.capacityAt(i) {
			r.OverloadS++
		}
	}
}
