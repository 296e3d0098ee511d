package simulate

import "time"

// The kernel retransmits a SYN that got no answer: first after synRTO,
// then after twice the previous wait (Linux: 1, 2, 4, 8, 16 and 32 s, six
// retransmits by default, tcp_syn_retries), as long as the connect timeout
// allows. A retransmit that finds room in the accept queue is taken.
const (
	synRTO     = int64(time.Second)
	synRetries = 6
)

// synAt returns when the k-th SYN of a connect attempt started at start
// goes: k = 0 is the first, at start; retransmit k at start + (2^k - 1) s.
func synAt(start int64, k int) int64 { return start + synRTO*(1<<k-1) }

// keepIdle is how long a connection stays open after a refusal: a 503
// with Retry-After (admission's slot, the origin guard's wait) leaves the
// HTTP connection open, and the client's next attempt within keepIdle
// reuses it, with no new handshake. 90 s is the IdleConnTimeout of Go's
// http.DefaultTransport, which httpmw.Transport uses unless given another
// (nginx's keepalive_timeout is 75 s).
const keepIdle = int64(90 * time.Second)

// acceptQueue is one node's accept queue: the handshakes (TCP, TLS and
// the session's setup on the node) it works through first-in first-out at
// NodeSpec.AcceptRate. Like the origin's queue it is fluid: because later
// arrivals cannot overtake an attempt, its outcome is known when it
// arrives, and the queue's whole state is when the node is next free.
//
// An attempt that would wait longer than NodeSpec.AcceptBacklog is not
// answered (the kernel drops it with the backlog full) and costs the node
// nothing; the client's kernel retransmits the SYN (see synAt), and the
// connect fails at NodeSpec.ConnectTimeout when none is taken. Every
// attempt the node takes costs it the handshake, whatever admission then
// answers: admission's refusal comes after the handshake.
type acceptQueue struct {
	free float64 // when the node is next free to accept, virtual ns
}

// acceptModel is the accept queues' shared parameters, resolved per run.
type acceptModel struct {
	svc     float64 // ns of accept work per attempt
	backlog float64 // ns of queueing beyond which an attempt is dropped
	timeout int64   // a dropped attempt's connect fails this many ns later
}

func newAcceptModel(n NodeSpec) acceptModel {
	return acceptModel{
		svc:     1e9 / n.AcceptRate,
		backlog: float64(n.AcceptBacklog),
		timeout: int64(n.ConnectTimeout),
	}
}

// accept offers a connect attempt arriving at now to queue q. It returns
// when the node has done the attempt's handshake and whether it took the
// attempt at all; a dropped attempt leaves the queue as it was.
func (m acceptModel) accept(q *acceptQueue, now int64) (done int64, ok bool) {
	t := float64(now)
	start := max(t, q.free)
	if start-t >= m.backlog {
		return 0, false
	}
	q.free = start + m.svc
	return now + int64(q.free-t), true
}

// reset empties queue q at now: a node that restarts comes back with no
// attempts queued.
func (q *acceptQueue) reset(now int64) { q.free = float64(now) }

// route is the node the load balancer sends a new connection of client i
// to. The balancer hashes the client consistently, as Envoy's ring hash
// and Maglev, HAProxy's "balance source" with "hash-type consistent" and
// nginx's "hash ... consistent" do for cache affinity: a client goes to
// its own node (i mod nodes, the run's starting placement) while that
// node is in rotation, and to its fallback otherwise, the node in
// rotation that ranks it highest (rendezvous hashing of the client and
// the node), so that a failed node's clients spread evenly over the
// others and no other client moves. Only connections the balancer makes
// anew move: a client on its fallback stays there until it reconnects,
// and then goes back to its own node if that is in rotation again. With
// no node in rotation (a fleet-wide outage) the balancer sends each
// client to its own node (as Envoy does below its panic threshold).
//
// The balancer learns of a failure from its health check, NodeSpec.HealthCheck
// after the node went down; until then connections still go to the
// dead node and fail. It takes a returned node back into rotation
// HealthCheck after the node came up.
func (s *sim) route(i int) uint8 {
	n := s.sc.Nodes
	own := i % n
	if !s.nodes[own].out {
		return uint8(own)
	}
	best, bestH := own, uint64(0)
	for k := range n {
		if s.nodes[k].out {
			continue
		}
		if h := mix64(uint64(i)*uint64(MaxNodes) + uint64(k)); best == own || h > bestH {
			best, bestH = k, h
		}
	}
	return uint8(best)
}

// mix64 is SplitMix64's finaliser: a fixed, well-spread hash of z.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
