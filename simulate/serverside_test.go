package simulate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
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
