package warmup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The hold-off remembers at most max deletes; past that it holds off
// every value read before the newest forgotten delete + d: more than
// needed, never less.
func TestHoldOffBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := holdoff{d: 2 * time.Second, max: 2}
	h.deleted("a", t0)
	h.deleted("b", t0.Add(time.Second))
	assert.True(t, h.holds("a", t0.Add(time.Second)))
	assert.False(t, h.holds("a", t0.Add(2*time.Second)), "read after delete + d")
	assert.False(t, h.holds("c", t0), "never deleted")
	// A third recent delete: both others still hold something off, so
	// they are forgotten into the floor (b's delete, the newest).
	h.deleted("c", t0.Add(1500*time.Millisecond))
	assert.True(t, h.holds("c", t0.Add(2*time.Second)))
	assert.True(t, h.holds("a", t0.Add(2500*time.Millisecond)), "held by the floor")
	assert.True(t, h.holds("z", t0.Add(2500*time.Millisecond)), "the floor holds every key")
	assert.False(t, h.holds("z", t0.Add(3*time.Second)), "past the floor + d")
	assert.LessOrEqual(t, len(h.at), 2)
	// Deletes older than d are forgotten first, without moving the floor.
	h.deleted("d", t0.Add(10*time.Second))
	h.deleted("e", t0.Add(10*time.Second))
	assert.False(t, h.holds("z", t0.Add(3*time.Second)))
	assert.True(t, h.holds("e", t0.Add(11*time.Second)))
	off := holdoff{d: 0, max: 2}
	off.deleted("a", t0)
	assert.False(t, off.holds("a", t0), "HoldOff -1: none")
}
