package tail

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

const now = int64(1_000_000 * time.Second)

var sink float64

func TestHorizon(t *testing.T) {
	assert.Equal(t, float64(time.Minute/time.Microsecond), HorizonMicros(10, 5), "at least a minute")
	assert.InDelta(t, float64(100*time.Second/time.Microsecond), HorizonMicros(1, 100), 1e-6, "the burst's refill when longer")
}

// TestRefuseSpacesRefusals: refusals at one instant are told one need's
// interval apart, starting at their own wait.
func TestRefuseSpacesRefusals(t *testing.T) {
	var tl Tail
	assert.True(t, tl.Idle(now))
	for i := range 10 {
		got := tl.Refuse(now, 100*time.Millisecond, 1, 10, 5, "k")
		assert.Equal(t, time.Duration(i+1)*100*time.Millisecond, got, "refusal %d", i)
	}
	assert.False(t, tl.Idle(now))
	// Three tokens wanted: the tail moves on by three intervals.
	assert.Equal(t, 1100*time.Millisecond, tl.Refuse(now, 100*time.Millisecond, 3, 10, 5, "k"))
	assert.Equal(t, 1400*time.Millisecond, tl.Refuse(now, 100*time.Millisecond, 1, 10, 5, "k"))
	// A longer own wait wins.
	assert.Equal(t, 5*time.Second, tl.Refuse(now, 5*time.Second, 1, 10, 5, "k"))
	// Once the tail is past, the count restarts and the own wait rules.
	later := now + int64(time.Hour)
	assert.True(t, tl.Idle(later))
	assert.Equal(t, 100*time.Millisecond, tl.Refuse(later, 100*time.Millisecond, 1, 10, 5, "k"))
	assert.Equal(t, uint64(1), tl.Count)
}

// TestRefuseBeyondTheHorizon: the tail stops a horizon ahead; refusals past
// it are spread evenly over the horizon and never tell the same instant
// twice in a row.
func TestRefuseBeyondTheHorizon(t *testing.T) {
	var tl Tail
	h := time.Minute
	n := 0
	for ; tl.At-now < int64(h); n++ {
		tl.Refuse(now, 100*time.Millisecond, 1, 10, 5, "k")
	}
	assert.Equal(t, 599, n, "a horizon of 100 ms slots, less the first")
	at := tl.At
	var deciles [10]int
	prev := time.Duration(-1)
	for range 1000 {
		got := tl.Refuse(now, 100*time.Millisecond, 1, 10, 5, "k")
		assert.GreaterOrEqual(t, got, 100*time.Millisecond)
		assert.LessOrEqual(t, got, h)
		assert.NotEqual(t, prev, got)
		prev = got
		deciles[min(9, int(got*10/h))]++
	}
	assert.Equal(t, at, tl.At, "the tail does not move past the horizon")
	for i, c := range deciles {
		assert.InDelta(t, 100, c, 10, "decile %d of %v", i, deciles)
	}
	// Another key is spread differently.
	other := Tail{At: tl.At, Count: 0}
	assert.NotEqual(t, tl.Refuse(now, 0, 1, 10, 5, "k"), other.Refuse(now, 0, 1, 10, 5, "another key"))
}

func TestKeyFraction(t *testing.T) {
	for _, k := range []string{"", "k", "a long key of many bytes", "\x00\xff"} {
		f := KeyFraction(k)
		assert.GreaterOrEqual(t, f, 0.0)
		assert.Less(t, f, 1.0)
	}
	assert.Equal(t, KeyFraction("k"), KeyFraction("k"))
	assert.NotEqual(t, KeyFraction("a"), KeyFraction("b"))
	assert.Zero(t, testing.AllocsPerRun(100, func() { sink = KeyFraction("client-42") }))
}
