package bucketkey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLocalVerbatimAndHashed(t *testing.T) {
	assert.Equal(t, "user:1", Local("user:1"))
	long := strings.Repeat("x", 1<<20)
	l := Local(long)
	assert.Len(t, l, 33)
	assert.Equal(t, byte(0), l[0])
	assert.NotEqual(t, Local(long), Local(long+"y"))
	// A key that tries to look like a digest is itself hashed.
	assert.NotEqual(t, l, Local(l))
	assert.Len(t, Local(l), 33)
	assert.NotEqual(t, Local("{a}"), Local("a"))
	// Braces mean nothing in process: such keys stay verbatim there, and
	// are hashed only for Redis.
	assert.Equal(t, "{a}", Local("{a}"))
	assert.Equal(t, byte(0), Local("\x00a")[0])
	assert.Len(t, Local("\x00a"), 33)
}

func TestRedisTags(t *testing.T) {
	assert.Equal(t, "herdcap:api:{k:user:1}", Redis("herdcap", "api", "user:1"))
	k := Redis("herdcap", "api", "a}b{c")
	assert.Equal(t, 1, strings.Count(k, "{"))
	assert.Equal(t, 1, strings.Count(k, "}"))
	assert.True(t, strings.HasPrefix(Tag("a}b{c"), "h:"))
	// "h:<digest>" supplied as a raw key stays distinct from the digest form.
	assert.NotEqual(t, Tag("a}b{c"), Tag(Tag("a}b{c")))
	assert.Len(t, Redis("p", "n", strings.Repeat("z", 10<<20)), len("p:n:{h:}")+64)
}

func TestLocalZeroAlloc(t *testing.T) {
	n := testing.AllocsPerRun(100, func() { _ = Local("user:12345") })
	assert.Zero(t, n)
}

func FuzzTag(f *testing.F) {
	f.Add("user:1")
	f.Add("{x}")
	f.Add("\x00abc")
	f.Fuzz(func(t *testing.T, key string) {
		tag := Tag(key)
		if strings.ContainsAny(tag, "{}") {
			t.Fatalf("tag %q of %q holds a brace", tag, key)
		}
		if len(tag) > MaxVerbatim+2 && len(tag) != 66 {
			t.Fatalf("tag of %q has length %d", key, len(tag))
		}
		l := Local(key)
		if len(l) > MaxVerbatim && len(l) != 33 {
			t.Fatalf("local form of %q has length %d", key, len(l))
		}
	})
}
