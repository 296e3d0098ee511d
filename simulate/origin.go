package simulate

import (
	"container/heap"
	"math"
	"math/rand/v2"
)

// origin is the database behind the node caches: Origin.Concurrency
// workers (one by default) serving one FIFO queue at Origin.Capacity
// requests per second in all. Because the queue is first-in first-out, a
// request's start, end and outcome are known when it arrives (later
// arrivals cannot overtake it), so the origin needs no events of its own:
// its state is the time each worker is next free.
//
// What makes it an origin a skeptic accepts, by default:
//
//   - The queue is bounded in time (Origin.MaxQueue of capacity, 5 s by
//     default): a request that would wait longer is rejected at once, a
//     fast error that costs the origin nothing.
//   - Deadlines propagate: the caller gives up at Origin.Timeout, and the
//     origin drops a queued request whose caller has gone and stops one it
//     is serving at its caller's deadline. The work it did for a caller
//     that had gone is counted as waste. With Origin.FinishAbandoned it
//     does every request it queued to the end, whoever is still waiting
//     (the lenient model of the first simulator, in which a long queue
//     serves mostly requests nobody waits for).
//   - Service times have a tail: each request's service time is drawn from
//     a log-normal distribution of mean Concurrency ÷ Capacity and
//     coefficient of variation Origin.ServiceCV (1 by default; 0 is a fixed
//     time). Base latency (Origin.Latency) is added to every answer and
//     takes no capacity.
//   - Capacity can degrade under overload (Origin.Degrade: at a full
//     queue, service takes 1 + Degrade times as long; off by default) and
//     change during a run (Origin.Changes, e.g. a database failover that
//     halves it for two minutes).
type origin struct {
	svc     float64    // mean ns of service per request per worker, at full capacity
	factor  float64    // the capacity's current share of Origin.Capacity
	workers workerHeap // when each worker is next free, virtual ns
	latency int64      // base latency, ns
	timeout int64      // ns
	maxWait float64    // ns of queueing at which requests are rejected; 0: none
	finish  bool       // FinishAbandoned: no deadline propagation
	degrade float64    // Origin.Degrade
	sigma   float64    // log-normal σ of the service time; 0: fixed
	mu      float64    // log-normal μ, so that the mean is 1
	rng     *rand.Rand // service times, a stream of its own
}

// workerHeap is a min-heap of the workers' next free times.
type workerHeap []float64

func (h workerHeap) Len() int           { return len(h) }
func (h workerHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h workerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *workerHeap) Push(x any)        { *h = append(*h, x.(float64)) }
func (h *workerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newOrigin(sc *Scenario) origin {
	o := sc.Origin
	w := max(1, o.Concurrency)
	org := origin{
		svc:     float64(w) * 1e9 / o.Capacity,
		factor:  1,
		workers: make(workerHeap, w),
		latency: int64(o.Latency),
		timeout: int64(o.Timeout),
		finish:  o.FinishAbandoned,
		degrade: o.Degrade,
		rng:     rand.New(rand.NewPCG(sc.Seed, 0x0e1d)),
	}
	if !o.UnboundedQueue {
		org.maxWait = float64(o.MaxQueue)
	}
	if cv := o.serviceCV(); cv > 0 {
		org.sigma = math.Sqrt(math.Log1p(cv * cv))
		org.mu = -org.sigma * org.sigma / 2
	}
	return org
}

// outcome of one origin call.
type outcome uint8

const (
	served   outcome = iota // answered within the timeout
	timedOut                // the caller gave up at the timeout
	rejected                // the queue was full: a fast error, no work done
)

// setFactor sets the origin's capacity to factor × Origin.Capacity (a
// capacity change), for the requests that arrive from now on.
func (o *origin) setFactor(f float64) { o.factor = f }

// serviceTime draws one request's service time, ns, for a queueing delay
// of wait ns.
func (o *origin) serviceTime(wait float64) float64 {
	d := o.svc / o.factor
	if o.sigma > 0 {
		d *= math.Exp(o.mu + o.sigma*o.rng.NormFloat64())
	}
	if o.degrade > 0 {
		full := o.maxWait
		if full == 0 {
			full = float64(o.timeout)
		}
		d *= 1 + o.degrade*min(1, wait/full)
	}
	return d
}

// call submits a request at now whose caller waits timeout ns for it (the
// origin's Timeout, less what the caller spent before sending it). It
// returns when its caller learns the outcome, the outcome, the queueing
// delay it met (ns), and whether the origin spent work on it that nobody
// received (waste).
func (o *origin) call(now, timeout int64) (at int64, out outcome, wait float64, waste bool) {
	t := float64(now)
	start := max(t, o.workers[0])
	wait = start - t
	if o.maxWait > 0 && wait >= o.maxWait {
		return now + o.latency, rejected, wait, false
	}
	end := start + o.serviceTime(wait)
	deadline := t + float64(timeout-o.latency)
	switch {
	case end <= deadline:
		o.take(end)
		return now + o.latency + int64(end-t), served, wait, false
	case o.finish:
		// The lenient origin does the work whoever waits; a request that
		// starts after its caller left is pure waste.
		o.take(end)
	case start < deadline:
		// Cancelled at the deadline: the work up to it is wasted.
		o.take(deadline)
	default:
		// Dropped unstarted when its turn came: its caller had gone.
		return now + timeout, timedOut, wait, false
	}
	return now + timeout, timedOut, wait, true
}

// take marks the earliest-free worker busy until free.
func (o *origin) take(free float64) {
	o.workers[0] = free
	if len(o.workers) > 1 {
		heap.Fix(&o.workers, 0)
	}
}

// backlog returns the queueing delay a request arriving at now would meet.
func (o *origin) backlog(now int64) float64 {
	return max(0, o.workers[0]-float64(now))
}
