package invalidate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDenseRoundTrip(t *testing.T) {
	var r, got [hllRegisters]uint8
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range r {
		r[i] = uint8(rng.IntN(52))
	}
	b := encodeDense(&r)
	require.Len(t, b, hllDenseSize)
	require.True(t, decodeDense(b, &got))
	assert.Equal(t, r, got)
	assert.False(t, decodeDense(b[:len(b)-1], &got))
	b[4] = 1
	assert.False(t, decodeDense(b, &got), "not dense")
}

func TestSketchCounts(t *testing.T) {
	var s sketch
	for _, n := range []int{0, 1, 100, 10_000, 200_000} {
		s.reset()
		for i := range n {
			s.add(fmt.Sprintf("client-%d", i))
			s.add(fmt.Sprintf("client-%d", i))
		}
		got := s.estimate()
		if n < 100 {
			assert.Equal(t, int64(n), got, "small counts are exact")
		} else {
			assert.InEpsilon(t, n, got, 0.03, "n=%d", n)
		}
	}
}

// TestSketchMatchesRedis: the memory store's estimator gives PFCOUNT's
// answer for the same registers, so both stores pace alike.
func TestSketchMatchesRedis(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	key := "herdcap:{inv:" + uniqueNS() + "}:hll"
	for _, n := range []int{1, 50, 1000, 30_000, 300_000} {
		var s sketch
		for i := range n {
			s.add(fmt.Sprintf("c%d", i))
		}
		var r [hllRegisters]uint8
		s.registers(&r)
		require.NoError(t, c.Set(ctx, key, encodeDense(&r), 0).Err())
		want, err := c.PFCount(ctx, key).Result()
		require.NoError(t, err)
		assert.Equal(t, uint64(want), hllCount(&r), "n=%d", n)
	}
}

func TestSketchAddAllocatesNothing(t *testing.T) {
	var s sketch
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.add("client-123") }))
}
