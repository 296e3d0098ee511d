package fill

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/fleet"
)

// fixedCache always holds one entry, and drops Sets.
type fixedCache struct{ e Entry[string] }

func (c fixedCache) Get(context.Context, string) (Entry[string], bool) {
	return c.e, c.e.Expires != time.Time{}
}
func (fixedCache) Set(context.Context, string, Entry[string]) {}

func quick(context.Context, string) (string, time.Duration, error) { return "v", time.Minute, nil }

// joinedGroup returns a Group with a finished fill of "k" in flight for
// ever, so that every call of "k" takes the joining path.
func joinedGroup(tb testing.TB) *Group[string] {
	g, err := New[string](fixedCache{}, Config{})
	require.NoError(tb, err)
	f := &flight[string]{done: make(chan struct{}), src: FromFill, entry: Entry[string]{Value: "v", Expires: time.Now().Add(time.Hour)}}
	close(f.done)
	g.flights["k"] = f
	return g
}

func TestHotPathsAllocateNothing(t *testing.T) {
	// Beta and FillTime: the early-refresh draw is on the path.
	g, err := New[string](fixedCache{Entry[string]{Value: "v", Expires: time.Now().Add(time.Hour), FillTime: time.Millisecond}}, Config{Beta: 1})
	require.NoError(t, err)
	defer g.Close()
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = g.Do(ctx, "k", quick) }), "a fresh entry")

	j := joinedGroup(t)
	defer j.Close()
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		r, _ := j.Do(ctx, "k", quick)
		if r.Source != FromFill {
			t.Fatal(r.Source)
		}
	}), "joining a fill in flight")
}

func BenchmarkFreshHit(b *testing.B) {
	g, err := New[string](fixedCache{Entry[string]{Value: "v", Expires: time.Now().Add(time.Hour)}}, Config{})
	require.NoError(b, err)
	defer g.Close()
	benchDo(b, g)
}

func BenchmarkJoinInFlight(b *testing.B) {
	g := joinedGroup(b)
	defer g.Close()
	benchDo(b, g)
}

// benchDo calls g.Do for "k" on every core.
func benchDo(b *testing.B, g *Group[string]) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = g.Do(ctx, "k", quick)
		}
	})
}

// BenchmarkFill is a miss filled in process: a flight, its goroutine and
// its contexts.
func BenchmarkFill(b *testing.B) {
	g, err := New[string](fixedCache{}, Config{})
	require.NoError(b, err)
	defer g.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = g.Do(ctx, "k", quick)
	}
}

// BenchmarkLeasedFill is a miss filled under the fleet lease: the caller
// waits for one round trip (the lease), and the release follows after it
// has its value.
func BenchmarkLeasedFill(b *testing.B) {
	client := srv.Client(b)
	g, err := NewShared[string](fixedCache{}, fleet.Redis{Client: client, Name: uniqueName(), Timeout: time.Second}, SharedConfig[string]{})
	require.NoError(b, err)
	defer g.Close()
	ctx := context.Background()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := g.Do(ctx, keys[i%len(keys)], quick); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if g.Stats().Unleased != 0 {
		b.Fatal("fills without the lease")
	}
}

// BenchmarkHandoffHit is a miss of a node-local cache served by another
// node's handoff: a flight, and one round trip that returns the entry
// instead of the lease, decoded and Set in the cache.
func BenchmarkHandoffHit(b *testing.B) {
	client := srv.Client(b)
	r := fleet.Redis{Client: client, Name: uniqueName(), Timeout: time.Second}
	cfg := SharedConfig[string]{Handoff: stringCodec{}}
	holder, err := NewShared[string](newMemCache[string](), r, cfg)
	require.NoError(b, err)
	defer holder.Close()
	ctx := context.Background()
	hour := func(context.Context, string) (string, time.Duration, error) { return "v", time.Hour, nil }
	_, err = holder.Do(ctx, "k", hour)
	require.NoError(b, err)
	holder.wg.Wait()                                  // handed off
	g, err := NewShared[string](fixedCache{}, r, cfg) // misses every time
	require.NoError(b, err)
	defer g.Close()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := g.Do(ctx, "k", hour); err != nil || r.Source != FromHandoff {
			b.Fatal(r.Source, err)
		}
	}
}
