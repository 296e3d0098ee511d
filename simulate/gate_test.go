package simulate

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gateClients is the size the CI gate runs the built-in scenarios at: big
// enough for their dynamics (and their declared bounds) to hold, small
// enough for the whole gate to take seconds, well under a minute under
// -race on two cores.
const gateClients = 20_000

// TestBuiltInBounds is the CI gate: every built-in scenario, unprotected
// and protected with the same seed, must meet the bounds it declares —
// the protected fleet within its budgets, converged and not collapsed; the
// unprotected one showing the failure it is protected from.
func TestBuiltInBounds(t *testing.T) {
	scs, err := BuiltIn()
	require.NoError(t, err)
	require.Len(t, scs, 4)
	for _, sc := range scs {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			small, err := sc.Scale(gateClients)
			require.NoError(t, err)
			require.NotEmpty(t, small.Bounds, "a built-in scenario declares its bounds")
			c, err := Compare(context.Background(), small, Config{})
			require.NoError(t, err)
			for _, ch := range c.Checks {
				assert.True(t, ch.Pass, "%s: %s [%s]", sc.Name, ch.Bound, ch.Got)
			}
			assert.True(t, c.Pass)
			// Whatever a file declares, these hold for every built-in.
			assert.False(t, c.Protected.Collapsed, "protected run collapsed")
			assert.True(t, c.Unprotected.PeakOverSteady >= 20 || c.Unprotected.Collapsed || sc.Trigger.Kind == KindConfigChange,
				"the unprotected run shows no failure: peak ÷ steady %v, collapsed %v", c.Unprotected.PeakOverSteady, c.Unprotected.Collapsed)
			assert.LessOrEqual(t, c.Protected.PeakOverBudget, 1.1)
		})
	}
}

// TestIncidentDynamics checks that the unprotected incident collapses
// through the model's dynamics (timeouts, wasted work, retries and
// reconnects) and the protected one does not need any of them.
func TestIncidentDynamics(t *testing.T) {
	sc := builtin(t, "incident", 5000)
	un, err := Run(context.Background(), sc, Unprotected, Config{})
	require.NoError(t, err)
	assert.True(t, un.Collapsed)
	assert.Greater(t, un.WastedCalls, un.OriginCalls/2, "most origin work is done for callers that gave up")
	assert.Greater(t, un.Amplification, 5.0, "retries and reconnects multiply the origin calls")
	assert.Greater(t, un.ReconnectPeak, 100.0, "errors turn into a reconnect storm")
	assert.Greater(t, un.OverloadCalls, 0.0)
	s := un.Series
	trig := int(sc.Trigger.At.Seconds())
	assert.Greater(t, s.QueueDelay[len(s.QueueDelay)-1], sc.Origin.Timeout.Seconds(), "the origin queue is still longer than the timeout at the end")

	pr, err := Run(context.Background(), sc, Protected, Config{})
	require.NoError(t, err)
	assert.False(t, pr.Collapsed)
	assert.Zero(t, pr.WastedCalls)
	assert.InDelta(t, 1, pr.Amplification, 0.05)
	// Both runs start from the same clients and poll phases; before the
	// trigger only the origin budget's brief holds (milliseconds) tell
	// them apart, so their steady states agree closely.
	assert.InEpsilon(t, un.SteadyRPS, pr.SteadyRPS, 0.1)
	assert.Equal(t, un.NormalHitRate, pr.NormalHitRate)
	_ = trig
}

// builtin returns the built-in scenario name, resized to clients.
func builtin(t testing.TB, name string, clients int) *Scenario {
	t.Helper()
	scs, err := BuiltIn()
	require.NoError(t, err)
	for _, sc := range scs {
		if sc.Name == name {
			s, err := sc.Scale(clients)
			require.NoError(t, err)
			return s
		}
	}
	t.Fatalf("no built-in %q", name)
	return nil
}

// TestJitterPolicy: with client-side full jitter instead of admission
// slots, the protected reconnect storm still stays within the origin
// budget and converges: the herd spreads over the backoff window and the
// origin budget holds the rest.
func TestJitterPolicy(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 5000)
	sc.Client.Backoff = "jitter"
	r, err := Run(context.Background(), sc, Protected, Config{})
	require.NoError(t, err)
	assert.LessOrEqual(t, r.PeakOverBudget, 1.1)
	assert.False(t, r.Collapsed)
	assert.True(t, r.Converged)
	slot := builtin(t, "reconnect-storm", 5000)
	rs, err := Run(context.Background(), slot, Protected, Config{})
	require.NoError(t, err)
	assert.Greater(t, r.ReconnectPeak, 0.0)
	assert.NotEqual(t, rs.ReconnectPeak, r.ReconnectPeak, "the two policies bring clients back differently")
}
