package admission

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// TestAdmissionReportsSlots: every Admit is reported, granted or refused
// with the wait it was told, on every store; the hook may call back into
// the gate (it is called with no lock held).
func TestAdmissionReportsSlots(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		var (
			mu  sync.Mutex
			got []observe.Admission
			g   subject
		)
		cfg := Config{Config: limiter.Config{Name: "sessions", Observe: &observe.Hooks{Admission: func(e observe.Admission) {
			_ = g.Limit()
			_ = g.Stats()
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		}}}}
		g = s.make(t, limiter.PerSecond(10, 2), cfg)
		var waits []time.Duration
		for _, id := range []string{"a", "b", "c", "d"} {
			d, err := g.Admit(context.Background(), id, "")
			require.NoError(t, err)
			waits = append(waits, d.RetryAfter)
		}
		src := observe.Source(s.via)
		assert.Equal(t, []observe.Admission{
			{Policy: "sessions", Granted: true, Source: src},
			{Policy: "sessions", Granted: true, Source: src},
			{Policy: "sessions", Wait: waits[2], Source: src},
			{Policy: "sessions", Wait: waits[3], Source: src},
		}, got)
		assert.Positive(t, waits[3]-waits[2], "the second refusal waits longer")
	})
}
