package simulate

// origin is the database behind the node caches: one FIFO queue served at
// capacity requests per second. Because the queue is first-in first-out and
// the service time fixed, a request's completion time is known when it
// arrives, so the origin needs no events of its own: it is a "fluid" queue
// whose state is the time it will next be idle.
//
// Latency grows with the queue. A request whose latency would exceed the
// timeout fails at the timeout, but the origin still does its work when its
// turn comes (there is no deadline propagation): that wasted work is what
// lets a queue stay long after the load that built it has gone, the
// mechanism of a metastable collapse. A queue limit, when set, rejects
// requests at once.
type origin struct {
	svc     float64 // ns of service per request
	free    float64 // virtual ns at which the origin is next idle
	latency int64   // base latency, ns
	timeout int64   // ns
	limit   float64 // queued requests at which new ones are rejected; 0: none
}

func newOrigin(sc *Scenario) origin {
	return origin{
		svc:     1e9 / sc.Origin.Capacity,
		latency: int64(sc.Origin.Latency),
		timeout: int64(sc.Origin.Timeout),
		limit:   float64(sc.Origin.QueueLimit),
	}
}

// outcome of one origin call.
type outcome uint8

const (
	served   outcome = iota // answered within the timeout
	timedOut                // the caller gave up at the timeout; the work is still done
	rejected                // the queue was full: a fast error, no work done
)

// call submits a request at now and returns when its caller learns the
// outcome, and the queueing delay it met (ns).
func (o *origin) call(now int64) (at int64, out outcome, wait float64) {
	t := float64(now)
	start := max(t, o.free)
	wait = start - t
	if o.limit > 0 && wait/o.svc >= o.limit {
		return now + o.latency, rejected, wait
	}
	o.free = start + o.svc
	lat := int64(o.free-t) + o.latency
	if lat > o.timeout {
		return now + o.timeout, timedOut, wait
	}
	return now + lat, served, wait
}

// backlog returns the queueing delay a request arriving at now would meet.
func (o *origin) backlog(now int64) float64 {
	return max(0, o.free-float64(now))
}
