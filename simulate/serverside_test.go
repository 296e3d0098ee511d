package simulate

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

// protectedSim returns a protected run of sc on the memory store, set up
// as Run sets it up, not started.
func protectedSim(t *testing.T, sc *Scenario) *sim {
	t.Helper()
	s := newSim(context.Background(), sc, Protected)
	cs, err := newClientSide(sc, sc.Seed, Protected)
	require.NoError(t, err)
	s.cli = cs
	g, err := newGuards(sc, &store{clock: s.clock}, sc.Seed, s.id)
	require.NoError(t, err)
	t.Cleanup(g.close)
	s.prot = g
	return s
}

// TestAdmissionThroughServerside: a node answers a reconnect through
// serverside's Admitter, and the client reads the answer as the client
// core reads httpmw's 503: a refusal's slot is the Admitter's RetryAfter,
// Exact, sent in whole milliseconds and read as a clientcore.Slot; the
// slots are spread, one per client.
func TestAdmissionThroughServerside(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 2000) // admission: 2 sessions a second, burst 1
	s := protectedSim(t, sc)
	s.advance(int64(sc.Trigger.At))
	const n = 20
	slots := map[time.Duration]int{}
	admitted := 0
	for i := range n {
		s.handshake(i)
		require.NoError(t, s.err)
		if s.cl[i].flags&fDenied == 0 {
			admitted++
			continue
		}
		assert.Equal(t, aConnErr, s.cl[i].act, "client %d: refused, the attempt fails", i)
		// Asked again at the same instant, the gate names the client's
		// booked slot again: what the Admitter answered the handshake.
		o := s.prot.admitter.Decide(context.Background(), sessionReq(i), nil)
		require.Equal(t, serverside.Refuse, o.Verdict, "client %d", i)
		require.True(t, o.Exact, "a refusal's wait is the gate's spread slot")
		want := clientcore.Hint{Kind: clientcore.Slot, Wait: time.Duration(wire.CeilMillis(o.RetryAfter)) * time.Millisecond}
		got := s.hint(i, true)
		assert.Equal(t, want, got, "client %d reads the slot as sent", i)
		slots[got.Wait]++
	}
	assert.Equal(t, 1, admitted, "the burst admits one session, the others get slots")
	assert.Len(t, slots, n-1, "every refused client has a slot of its own")

	// A coarse answer (a failed gate's UnavailableRetryAfter) reaches the
	// client as Retry-After's whole seconds.
	assert.Equal(t, clientcore.Hint{Kind: clientcore.Coarse, Wait: 2 * time.Second}, toldHint(1001*time.Millisecond, false))
	assert.Equal(t, clientcore.Hint{Kind: clientcore.Coarse, Wait: time.Second}, toldHint(0, false))
	assert.Equal(t, clientcore.Hint{Kind: clientcore.Slot, Wait: 1002 * time.Millisecond}, toldHint(1001*time.Millisecond+1, true))
}

// TestAdmitAllocatesNothingNew: deciding a session through the Admitter
// allocates no more than asking the gate directly, admitted or refused.
func TestAdmitAllocatesNothingNew(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 100_000)
	s := protectedSim(t, sc)
	s.advance(int64(sc.Trigger.At))
	ctx := context.Background()
	next := 0
	gate := testing.AllocsPerRun(1000, func() {
		if _, err := s.prot.admission.Admit(ctx, s.id(next), ""); err != nil {
			t.Fatal(err)
		}
		next++
	})
	admitter := testing.AllocsPerRun(1000, func() {
		if _, err := s.prot.admit(ctx, next); err != nil {
			t.Fatal(err)
		}
		next++
	})
	t.Logf("allocs per decision: gate %v, through the Admitter %v", gate, admitter)
	assert.LessOrEqual(t, admitter, gate)
}

// TestNoticesThroughServerside: a node tells a client its notices through
// serverside's Notifier: once the client's cohort is released, due
// returns the epoch of the field the Notifier sends with the notice list.
// A coordinator that cannot read its store (its Redis gone before the
// node's first read) stops the run, rather than letting the Notifier serve
// the request without notices and change the numbers.
func TestNoticesThroughServerside(t *testing.T) {
	ctx := context.Background()
	sc := builtin(t, "rogue-invalidate", 2000)
	s := protectedSim(t, sc)
	s.end = int64(sc.Trigger.At.D() + 30*time.Second) // the rollout half done
	require.NoError(t, s.run())
	require.NotZero(t, s.target)
	g := s.prot
	due := -1
	for i := range sc.Clients {
		ep, err := g.due(ctx, s.node(i), i, 0)
		require.NoError(t, err)
		if ep > 0 {
			assert.Equal(t, s.target, ep)
			due = i
			break
		}
	}
	require.GreaterOrEqual(t, due, 0, "some client's cohort is released")
	o := g.notifiers[s.node(due)].Decide(ctx, sessionReq(due), []string{"0"}, true)
	assert.Equal(t, serverside.Pass, o.Verdict)
	assert.Contains(t, o.Value, "rogue-"+sc.Name, "the notice list as the transports send it")
	assert.Equal(t, strconv.FormatUint(s.target, 10), o.Epoch)
	ep, err := g.due(ctx, s.node(due), due, s.target)
	require.NoError(t, err)
	assert.Equal(t, s.target, ep, "nothing more is due once applied")

	// On a Redis that is gone before a node first reads it.
	own := redistest.Start(t)
	r := newSim(ctx, sc, Protected)
	st := &store{clock: r.clock}
	cleanup, err := st.openRedis(ctx, own.Options())
	require.NoError(t, err)
	t.Cleanup(cleanup)
	rg, err := newGuards(sc, st, sc.Seed, r.id)
	require.NoError(t, err)
	t.Cleanup(rg.close)
	r.prot = rg
	own.Kill(t)
	r.pollDue(0)
	require.Error(t, r.err, "a coordinator that cannot read its store stops the run")
	assert.ErrorContains(t, r.err, "coordinator failed")
}

// TestDueAllocatesNothing: a page view's question to its node, through
// the Notifier, allocates nothing when no notice is due (every poll of
// a protected invalidation run asks it).
func TestDueAllocatesNothing(t *testing.T) {
	sc := builtin(t, "rogue-invalidate", 2000)
	s := protectedSim(t, sc)
	s.end = int64(sc.Trigger.At.D() + 30*time.Second)
	require.NoError(t, s.run())
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.prot.due(ctx, s.node(i), i, s.target); err != nil {
			t.Fatal(err)
		}
		i = (i + 1) % sc.Clients
	})
	assert.Zero(t, allocs, "target %d", s.target)
}

// BenchmarkDue: a page view's question to its node, through the Notifier
// (as the run asks it) and straight to the coordinator (what the
// Notifier adds).
func BenchmarkDue(b *testing.B) {
	sc := builtin(b, "rogue-invalidate", 2000)
	s := newSim(context.Background(), sc, Protected)
	g, err := newGuards(sc, &store{clock: s.clock}, sc.Seed, s.id)
	if err != nil {
		b.Fatal(err)
	}
	defer g.close()
	ctx := context.Background()
	b.Run("notifier", func(b *testing.B) {
		b.ReportAllocs()
		for n := range b.N {
			i := n % sc.Clients
			if _, err := g.due(ctx, i%sc.Nodes, i, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("coordinator", func(b *testing.B) {
		b.ReportAllocs()
		var buf [8]invalidate.Notice
		for n := range b.N {
			i := n % sc.Clients
			if _, err := g.coords[i%sc.Nodes].AppendDue(ctx, buf[:0], s.id(i), 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
