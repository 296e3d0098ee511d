package origin_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/origin"
	"github.com/herdcap/herdcap/observe"
)

// TestGuardReportsDecisions: each Reserve is reported under the origin's
// name (the Background lane's under name/background), refusals for the
// deadline as local; the hook may call back into the guard.
func TestGuardReportsDecisions(t *testing.T) {
	var (
		got []string
		g   *origin.Guard
	)
	hook := func(e observe.Decision) {
		_ = g.Stats()
		got = append(got, e.Policy+" "+e.Outcome.String()+" "+e.Source.String())
	}
	g, clk := newGuard(t, 10, origin.Config{MaxWait: origin.NoWait, Observe: &observe.Hooks{Decision: hook}})
	ctx := context.Background()
	for _, lane := range []origin.Lane{origin.Foreground, origin.Foreground, origin.Background} {
		h, err := g.Reserve(ctx, time.Time{}, lane)
		require.NoError(t, err)
		if h.Allowed {
			h.Cancel()
		}
	}
	_, err := g.Reserve(ctx, clk.Now(), origin.Foreground) // no time left before the deadline
	require.NoError(t, err)
	assert.Equal(t, []string{"db allowed local", "db denied local", "db/background denied local", "db denied local"}, got)
}
