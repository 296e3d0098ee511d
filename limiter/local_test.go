package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLocalBasic(t *testing.T) {
	lb, err := NewLocal(PerSecond(10, 5))
	require.NoError(t, err)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		d, err := lb.AllowNAt(ctx, "k", t0, 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 4-i, d.Remaining)
	}
	d, err := lb.AllowNAt(ctx, "k", t0, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
	assert.Equal(t, 500*time.Millisecond, d.ResetAfter)
	assert.Equal(t, SourceLocal, d.Source)
}
