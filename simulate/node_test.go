package simulate

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAcceptQueue: the accept queue serves attempts first-in first-out at
// its rate, drops one that would wait the backlog or more without
// changing its state, and a restart empties it.
func TestAcceptQueue(t *testing.T) {
	m := newAcceptModel(NodeSpec{AcceptRate: 10, AcceptBacklog: Duration(time.Second), ConnectTimeout: Duration(3 * time.Second)})
	ms := int64(time.Millisecond)
	var q acceptQueue
	// Ten attempts at 0 take 100 ms each, back to back: the tenth would
	// wait 900 ms, under the backlog; the eleventh would wait 1 s.
	for k := range 10 {
		done, ok := m.accept(&q, 0)
		require.True(t, ok, "attempt %d", k)
		assert.Equal(t, int64(k+1)*100*ms, done)
	}
	free := q.free
	_, ok := m.accept(&q, 0)
	assert.False(t, ok, "a full backlog drops the attempt")
	assert.Equal(t, free, q.free, "a dropped attempt costs the node nothing")
	// 1 ms later the queue is 999 ms long: taken, done at 1.1 s.
	done, ok := m.accept(&q, ms)
	require.True(t, ok)
	assert.Equal(t, 1100*ms, done)
	// An idle node takes an attempt at once, for one handshake.
	done, ok = m.accept(&q, 5000*ms)
	require.True(t, ok)
	assert.Equal(t, 5100*ms, done)
	for range 5 {
		m.accept(&q, 5000*ms)
	}
	q.reset(5050 * ms) // the node restarts: its queue is gone
	done, ok = m.accept(&q, 5050*ms)
	require.True(t, ok)
	assert.Equal(t, 5150*ms, done, "a restarted node has nothing queued")
	assert.Equal(t, 3*int64(time.Second), m.timeout)
}

// TestSynAt: the kernel's SYN schedule, 1 s doubling.
func TestSynAt(t *testing.T) {
	s := int64(time.Second)
	var got []int64
	for k := range synRetries + 1 {
		got = append(got, synAt(10*s, k)-10*s)
	}
	assert.Equal(t, []int64{0, 1 * s, 3 * s, 7 * s, 15 * s, 31 * s, 63 * s}, got)
}

// TestNodeSpecDefaultsAndScale: the accept rate defaults to a node's
// population in ten seconds and scales with clients; the backlog and the
// connect timeout keep their time.
func TestNodeSpecDefaultsAndScale(t *testing.T) {
	sc, err := ParseScenario([]byte(minimal))
	require.NoError(t, err)
	assert.InDelta(t, 1000.0/10/10, sc.Node.AcceptRate, 1e-9, "clients ÷ nodes ÷ 10 s")
	assert.Equal(t, time.Second, sc.Node.AcceptBacklog.D())
	assert.Equal(t, 30*time.Second, sc.Node.ConnectTimeout.D())
	assert.Equal(t, 5*time.Second, sc.Node.HealthCheck.D())
	big, err := sc.Scale(100_000)
	require.NoError(t, err)
	assert.InDelta(t, 100*sc.Node.AcceptRate, big.Node.AcceptRate, 1e-9)
	assert.Equal(t, sc.Node.AcceptBacklog, big.Node.AcceptBacklog)
	assert.Equal(t, sc.Node.ConnectTimeout, big.Node.ConnectTimeout)
	assert.Equal(t, sc.Node.HealthCheck, big.Node.HealthCheck)
}

// TestNodeSpecErrors: bad node fields are errors naming the field.
func TestNodeSpecErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"accept_rate":-1}`:          "scenario.node.accept_rate: must not be negative, got -1",
		`{"accept_rate":1e10}`:        "scenario.node.accept_rate: must be between",
		`{"accept_backlog":"2m"}`:     "scenario.node.accept_backlog: must be between 1ms and 1m0s, got 2m0s",
		`{"accept_backlog":"-1s"}`:    "scenario.node.accept_backlog: must be between",
		`{"connect_timeout":"1h"}`:    "scenario.node.connect_timeout: must be between 1ms and 10m0s, got 1h0m0s",
		`{"connect_timeout":"500us"}`: "scenario.node.connect_timeout: must be between",
		`{"accept_rate":"fast"}`:      "scenario.node.accept_rate",
		`{"health_check":"2h"}`:       "scenario.node.health_check: must be between 1ms and 1h0m0s, got 2h0m0s",
		`{"health_check":"-1s"}`:      "scenario.node.health_check: must be between",
	} {
		in := `{"name":"t","clients":1000,"origin":{"capacity":10},"trigger":{"kind":"rogue-invalidate"},"node":` + in + `}`
		sc, err := ParseScenario([]byte(in))
		assert.Nil(t, sc, in)
		assert.ErrorIs(t, err, ErrInvalidScenario, in)
		assert.ErrorContains(t, err, want, in)
	}
}

// TestUnansweredConnectFails: when the accept backlog is full, a connect
// attempt is not answered; the kernel's retransmit (here after 1 s) may
// get it in, else it fails at the connect timeout, an error that is not a
// refusal, and the node did no work for it.
func TestUnansweredConnectFails(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 2000)
	sc.Node.AcceptRate = 1 // a node takes one connection a second
	sc.Node.AcceptBacklog = Duration(time.Second)
	sc.Node.ConnectTimeout = Duration(2 * time.Second) // one retransmit, at 1 s
	sc.Client.Reaction = Duration(100 * time.Millisecond)
	r, err := Run(context.Background(), sc, Unprotected, Config{})
	require.NoError(t, err)
	trig := int(sc.Trigger.At.D() / time.Second)
	s := r.Series
	// 600 clients drop at the trigger: each node takes about 2 at once
	// (one served, one queued) and 1 a second after; the others' connects
	// fail 2 s after their attempt, in the trigger's second + 2.
	assert.Greater(t, s.Reconnects[trig], 550.0, "the blip's clients attempt at once")
	assert.Greater(t, s.Errors[trig+2], 500.0, "unanswered connects fail at the connect timeout")
	assert.Zero(t, s.Errors[trig]+s.Errors[trig+1], "not before it")
	assert.Zero(t, s.Refused[trig+2], "a connect timeout is no refusal")
	assert.Less(t, s.OriginCalls[trig]+s.OriginCalls[trig+1]+s.OriginCalls[trig+2], 60.0, "only the taken attempts reach the origin")
}

// TestNodesThrottleNaiveFleet: in the incident, nodes that accept
// connections at a finite rate keep most of the naive fleet's reconnects
// from the origin, and the unprotected run still collapses.
func TestNodesThrottleNaiveFleet(t *testing.T) {
	modelCheck(t)
	run := func(rate float64) *Result {
		sc := builtin(t, "incident", 5_000)
		if rate > 0 {
			sc.Node.AcceptRate = rate
		}
		r, err := Run(context.Background(), sc, Unprotected, Config{})
		require.NoError(t, err)
		return r
	}
	unlimited := run(MaxRate)
	nodes := run(0)
	t.Logf("origin calls: %d with unlimited nodes, %d with the default", unlimited.OriginCalls, nodes.OriginCalls)
	// The default nodes take 500 connections a second in all at 5,000
	// clients; unlimited, every attempt reaches the origin about once a
	// second. (5,000 clients: the unlimited run makes some 8 million
	// origin calls, 118 s under -race at 20,000.)
	assert.Less(t, float64(nodes.OriginCalls), 0.5*float64(unlimited.OriginCalls))
	assert.True(t, nodes.Collapsed, "the naive fleet still collapses")
	assert.Greater(t, nodes.StormFailedShare, 0.2)
}

// TestRefusalKeepsConnection: a refusal is a 503 on an open connection,
// so a client that comes back within keepIdle skips the accept queue; one
// that comes back later, or failed otherwise, connects anew.
func TestRefusalKeepsConnection(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 100)
	s := newSim(context.Background(), sc, Unprotected)
	for k := range s.nodes {
		s.nodes[k].acc.free = 1e12 // every backlog full
	}
	attempt := func(i int, flags uint8, delay time.Duration) (act uint8) {
		s.retryDelay = int64(delay)
		s.cl[i].flags = flags // disconnected
		s.connFailed(i, s.now)
		s.connect(i)
		return s.cl[i].act
	}
	assert.Equal(t, aConnOK, attempt(0, fDenied, time.Second), "refused, back within the idle timeout: on the open connection, to the origin")
	assert.Equal(t, int64(1), s.originCalls)
	assert.Equal(t, aSyn, attempt(1, fDenied, 2*time.Minute), "back after the idle timeout: a new connect, dropped")
	assert.Equal(t, aSyn, attempt(2, 0, time.Second), "a failure that was no refusal left no connection")
	s.cl[3].flags = fDenied
	s.connFailed(3, s.now)
	s.drop(3)
	s.connect(3)
	assert.Equal(t, aSyn, s.cl[3].act, "a drop closes the kept connection")
}

// TestClientIs32Bytes: the client array stays one cache line per two
// clients, with the node index in it.
func TestClientIs32Bytes(t *testing.T) {
	assert.Equal(t, uintptr(32), unsafe.Sizeof(client{}))
}

// runUntil runs sc in mode up to virtual time until (the run's end) and
// returns the sim, to look at its clients.
func runUntil(t *testing.T, sc *Scenario, mode Mode, until time.Duration) *sim {
	t.Helper()
	var s *sim
	if mode == Protected {
		s = protectedSim(t, sc)
	} else {
		s = newSim(context.Background(), sc, mode)
	}
	s.end = int64(until)
	require.NoError(t, s.run())
	return s
}

// TestRebalanceOnNodeFailure: behind the load balancer, a failed node's
// clients reconnect to the other nodes once its health check has noticed
// the failure, while the node is still down, spread over every other
// node; before that, their attempts still go to the dead node and fail.
// Nobody else moves. When the node is back in rotation, a new connection
// of its clients goes to it again, but the clients connected elsewhere
// stay where they are.
func TestRebalanceOnNodeFailure(t *testing.T) {
	sc := builtin(t, "node-failure", 2000) // node 3 down from 2m for 60 s
	sc.Origin.Capacity *= 100              // every session the nodes take succeeds
	sc.Protection.OriginBudget *= 100
	sc.Protection.AdmissionRate *= 100
	sc.Node.AcceptRate *= 10
	require.Equal(t, 5*time.Second, sc.Node.HealthCheck.D())
	failed := sc.Trigger.Node
	at := sc.Trigger.At.D()
	type census struct{ home, moved, away, byNode map[int]int }
	count := func(s *sim) (c census) {
		c.byNode = map[int]int{}
		var moved, home, away int
		for i := range sc.Clients {
			conn := s.cl[i].flags&fConn != 0
			switch {
			case i%sc.Nodes != failed:
				if s.node(i) != i%sc.Nodes {
					away++ // a client of another node moved
				}
			case conn && s.node(i) == failed:
				home++
			case conn:
				moved++
				c.byNode[s.node(i)]++
			}
		}
		c.home, c.moved, c.away = map[int]int{0: home}, map[int]int{0: moved}, map[int]int{0: away}
		return c
	}
	for _, mode := range []Mode{Unprotected, Protected} {
		t.Run(string(mode), func(t *testing.T) {
			early := count(runUntil(t, sc, mode, at+4*time.Second))
			assert.Zero(t, early.moved[0], "before the health check notices, attempts go to the dead node")
			assert.Zero(t, early.home[0])
			late := runUntil(t, sc, mode, at+15*time.Second)
			require.False(t, late.nodes[failed].up, "the node is still down")
			c := count(late)
			assert.Equal(t, 200, c.moved[0], "within the health check and a few seconds every client of the failed node is connected elsewhere")
			assert.Len(t, c.byNode, sc.Nodes-1, "spread over every other node")
			for k, n := range c.byNode {
				assert.Greater(t, n, 8, "node %d takes its share", k)
			}
			assert.Zero(t, c.away[0], "no other client moves")
		})
	}
	// Back in rotation: a new connection goes to the client's own node;
	// the moved clients stay connected where they are.
	s := runUntil(t, sc, Unprotected, at+sc.Trigger.Downtime.D()+sc.Node.HealthCheck.D()+time.Second)
	require.True(t, s.nodes[failed].up)
	require.False(t, s.nodes[failed].out)
	c := count(s)
	assert.Equal(t, 200, c.moved[0], "live clients are not moved back")
	i := failed
	assert.NotEqual(t, failed, s.node(i))
	s.cl[i].flags &^= fConn
	s.connected--
	s.connect(i)
	assert.Equal(t, failed, s.node(i), "a new connection goes to the client's own node")
}

// TestRoute: the balancer's choice: a client's own node while in
// rotation; else the same fallback every time, for a node's clients
// spread over the nodes in rotation; with none in rotation, its own.
func TestRoute(t *testing.T) {
	sc := builtin(t, "node-failure", 1000)
	s := newSim(context.Background(), sc, Unprotected)
	for i := range 100 {
		assert.Equal(t, uint8(i%10), s.route(i))
	}
	s.nodes[3].out, s.nodes[4].out = true, true
	seen := map[uint8]int{}
	for i := 3; i < 1000; i += 10 {
		k := s.route(i)
		assert.NotContains(t, []uint8{3, 4}, k, "client %d", i)
		assert.Equal(t, k, s.route(i), "the same fallback every time")
		seen[k]++
	}
	assert.Len(t, seen, 8, "spread over the nodes in rotation")
	assert.Equal(t, uint8(5), s.route(5), "other clients stay")
	for k := range s.nodes {
		s.nodes[k].out = true
	}
	assert.Equal(t, uint8(3), s.route(13), "none in rotation: its own node")
}
