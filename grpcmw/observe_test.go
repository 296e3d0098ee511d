package grpcmw

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// TestShadowRefusalsAreObserved: a shadow policy's refusal lets the call
// through and is reported as observe.Shadow, named by the policy.
func TestShadowRefusalsAreObserved(t *testing.T) {
	got := make(chan observe.Decision, 4)
	cfg := limitHealth
	cfg.Observe = &observe.Hooks{Decision: func(e observe.Decision) { got <- e }}
	rl := mustRateLimit(t, cfg, Policy{Name: "trial", Budget: newLocal(t, limiter.Every(time.Hour, 1)), Shadow: true})
	c := dialHealth(t, startHealth(t, grpc.ChainUnaryInterceptor(rl.Unary)))
	for range 2 {
		_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	}
	require.Len(t, got, 1)
	assert.Equal(t, observe.Decision{Policy: "trial", Outcome: observe.Shadow, Source: observe.SourceLocal, Tokens: 1}, <-got)
}
