package simulate

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLatencyBuckets: every time falls in the bucket whose edges hold it,
// the buckets are at most 25% wide, and times past the last edge share the
// last bucket.
func TestLatencyBuckets(t *testing.T) {
	assert.Equal(t, 0, latIndex(-5))
	assert.Equal(t, 0, latIndex(999_999))
	assert.Equal(t, 1, latIndex(int64(time.Millisecond)))
	prev := 0
	for ns := int64(time.Millisecond); ns < int64(20*time.Minute); ns += ns/97 + 1 {
		i := latIndex(ns)
		require.GreaterOrEqual(t, i, prev, "buckets grow with the time (%d ns)", ns)
		prev = i
		if i == latBuckets-1 {
			assert.GreaterOrEqual(t, float64(ns)/1e9, latUpper(i), "the last bucket starts at its stated edge")
			continue
		}
		lo, hi := latUpper(i-1), latUpper(i)
		s := float64(ns) / 1e9
		require.True(t, s >= lo-1e-12 && s < hi, "%v s in bucket %d [%v, %v)", s, i, lo, hi)
		require.LessOrEqual(t, hi/lo, 1.25+1e-9, "bucket %d", i)
	}
	assert.Equal(t, latBuckets-1, prev, "20 minutes reach the last bucket")
	assert.InDelta(t, 1048.576, latUpper(latBuckets-1), 1e-9)
}

// TestLatencyP99Series: the per-second p99 is the upper edge of the
// bucket holding the ⌈0.99 n⌉-th time, and NoLatency without times.
func TestLatencyP99Series(t *testing.T) {
	s := newSeries(3)
	for range 98 {
		s.addLatency(0, int64(10*time.Millisecond))
	}
	s.addLatency(0, int64(3*time.Second))
	s.addLatency(0, int64(3*time.Second)) // the 99th of 100
	s.addLatency(2, int64(time.Hour))
	s.addLatency(3, 1) // past the run: ignored
	s.latencyP99()
	assert.InDelta(t, 3, s.LatencyP99[0], 3*0.25, "the 99th of 100 is one of the 3 s times")
	assert.GreaterOrEqual(t, s.LatencyP99[0], 3.0)
	assert.Equal(t, float64(NoLatency), s.LatencyP99[1])
	assert.InDelta(t, 1048.576, s.LatencyP99[2], 1e-9)
	assert.Nil(t, s.lat, "the histograms are dropped")
}

// TestLatencyP99Run: in a real run every second with a completed fetch
// has a p99 within the run's range, and no other second has one.
func TestLatencyP99Run(t *testing.T) {
	sc := builtin(t, "incident", 2000)
	sc.Duration = Duration(5 * time.Minute)
	r, err := Run(context.Background(), sc, Protected, Config{})
	require.NoError(t, err)
	s := r.Series
	require.Len(t, s.LatencyP99, 300)
	with := 0
	for i, v := range s.LatencyP99 {
		if v == NoLatency {
			continue
		}
		with++
		assert.Positive(t, s.Goodput[i], "second %d has a p99 and so a completed fetch", i)
		assert.True(t, v > 0 && v <= 1048.576 && !math.IsNaN(v), "second %d: %v", i, v)
	}
	assert.Greater(t, with, 200, "most seconds complete a need")
}

// TestAddLatencyNoAllocs: recording a latency allocates nothing.
func TestAddLatencyNoAllocs(t *testing.T) {
	s := newSeries(10)
	ns := int64(0)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		ns += 7_777_777
		s.addLatency(int(ns/1e9)%10, ns)
	}))
}
