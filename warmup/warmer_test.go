package warmup_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/warmup"
)

func noFetch(context.Context, string) (any, time.Time, error) { return nil, time.Time{}, nil }

func TestConfigErrorsNameTheField(t *testing.T) {
	b := localBudget(t, 10, 1)
	s := warmup.NewMemoryStore()
	for _, tc := range []struct {
		cfg   warmup.Config
		field string
	}{
		{warmup.Config{Budget: b}, "Config.Store"},
		{warmup.Config{Store: s}, "Config.Guard and Config.Budget are both nil"},
		{warmup.Config{Store: s, Budget: b, ClaimTTL: -1}, "Config.ClaimTTL"},
		{warmup.Config{Store: s, Budget: b, ClaimTTL: time.Second, Interval: time.Second}, "Config.ClaimTTL"},
		{warmup.Config{Store: s, Budget: b, Interval: time.Microsecond}, "Config.Interval"},
		{warmup.Config{Store: s, Budget: b, ChunkSize: -1}, "Config.ChunkSize"},
		{warmup.Config{Store: s, Budget: b, ChunkSize: 2_000_000}, "Config.ChunkSize"},
		{warmup.Config{Store: s, Budget: b, Workers: -1}, "Config.Workers"},
		{warmup.Config{Store: s, Budget: b, Retries: -2}, "Config.Retries"},
		{warmup.Config{Store: s, Budget: b, RetryBackoff: -1}, "Config.RetryBackoff"},
		{warmup.Config{Store: s, Budget: b, HoldOff: -2}, "Config.HoldOff"},
		{warmup.Config{Store: s, Budget: b, MaxDeletes: -1}, "Config.MaxDeletes"},
		{warmup.Config{Store: s, Budget: b, MaxFailedKeys: -2}, "Config.MaxFailedKeys"},
		{warmup.Config{Store: s, Budget: b, Node: strings.Repeat("n", 257)}, "Config.Node"},
	} {
		_, err := warmup.New(tc.cfg)
		require.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.field)
		assert.Contains(t, err.Error(), tc.field)
	}
	_, err := warmup.NewRedisStore(fleetRedisNoClient())
	require.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "Redis.Client")
}

func TestBadWarmsAndItems(t *testing.T) {
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e6, 10)})
	require.NoError(t, err)
	src := warmup.Slice(items(3))
	nan, neg := math.NaN(), -1.0
	for _, tc := range []struct {
		name string
		w    warmup.Warm
		want string
	}{
		{"no ID", warmup.Warm{Source: src, Fetch: noFetch, Store: discard}, "Warm.ID"},
		{"long ID", warmup.Warm{ID: strings.Repeat("x", 257), Source: src, Fetch: noFetch, Store: discard}, "Warm.ID"},
		{"no source", warmup.Warm{ID: "a", Fetch: noFetch, Store: discard}, "Warm.Source"},
		{"no fetch", warmup.Warm{ID: "a", Source: src, Store: discard}, "Warm.Fetch"},
		{"no store", warmup.Warm{ID: "a", Source: src, Fetch: noFetch}, "Warm.Store"},
		{"NaN weight", warmup.Warm{ID: "a", Fetch: noFetch, Store: discard,
			Source: warmup.Slice([]warmup.Item{{"a", 3}, {"b", nan}})}, `item 1 (key "b"): weight is NaN`},
		{"negative weight", warmup.Warm{ID: "a", Fetch: noFetch, Store: discard,
			Source: warmup.Slice([]warmup.Item{{"a", 3}, {"b", 2}, {"c", neg}})}, `item 2 (key "c"): weight -1 is negative`},
		{"hotter later", warmup.Warm{ID: "a", Fetch: noFetch, Store: discard,
			Source: warmup.Slice([]warmup.Item{{"a", 3}, {"b", 4}})}, `item 1 (key "b"): weight 4 is above`},
		{"empty key", warmup.Warm{ID: "a", Fetch: noFetch, Store: discard,
			Source: warmup.Slice([]warmup.Item{{"", 3}})}, "item 0: empty key"},
	} {
		err := w.Start(context.Background(), tc.w)
		require.ErrorIs(t, err, warmup.ErrInvalidWarm, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
	}
	_, err = w.Status(context.Background(), "a")
	assert.ErrorIs(t, err, warmup.ErrUnknownWarm, "a refused warm is not registered")
	assert.ErrorIs(t, w.Pause(context.Background(), "a", warmup.By{Who: strings.Repeat("w", 257)}), warmup.ErrInvalidArgument)
	assert.ErrorIs(t, w.Abort(context.Background(), "a", warmup.By{Reason: strings.Repeat("r", 1025)}), warmup.ErrInvalidArgument)
}

// A warm of the same ID with other content conflicts.
func TestStartConflict(t *testing.T) {
	s := warmup.NewMemoryStore()
	a, err := warmup.New(warmup.Config{Store: s, Budget: localBudget(t, 1e6, 10), ChunkSize: 10})
	require.NoError(t, err)
	b, err := warmup.New(warmup.Config{Store: s, Budget: localBudget(t, 1e6, 10), ChunkSize: 10})
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background(), warmup.Warm{ID: "c", Source: warmup.Slice(items(5)), Fetch: noFetch, Store: discard}))
	require.NoError(t, a.Start(context.Background(), warmup.Warm{ID: "c", Source: warmup.Slice(items(5)), Fetch: noFetch, Store: discard}),
		"starting again does nothing")
	require.NoError(t, b.Start(context.Background(), warmup.Warm{ID: "c", Source: warmup.Slice(items(5)), Fetch: noFetch, Store: discard,
		HitRate: func() float64 { return 0.25 }}), "another node joins")
	st, err := b.Status(context.Background(), "c")
	require.NoError(t, err)
	assert.EqualValues(t, 5, st.Keys)
	assert.Equal(t, warmup.Running, st.Phase)
	assert.Equal(t, 0.25, st.HitRate, "the hit-rate hook is sampled")
	st, err = a.Status(context.Background(), "c")
	require.NoError(t, err)
	assert.True(t, math.IsNaN(st.HitRate), "no hook: NaN")

	bad, err := warmup.New(warmup.Config{Store: s, Budget: localBudget(t, 1e6, 10), ChunkSize: 10})
	require.NoError(t, err)
	require.NoError(t, bad.Start(context.Background(), warmup.Warm{ID: "c", Source: warmup.Slice(items(5)), Fetch: noFetch, Store: discard,
		HitRate: func() float64 { panic("hook") }}))
	st, err = bad.Status(context.Background(), "c")
	require.NoError(t, err)
	assert.True(t, math.IsNaN(st.HitRate), "a panicking hook: NaN")
}

// Fetch errors are retried within the retry budget, then the key is
// reported failed and the warm goes on; a panicking fetch or store is
// recovered, counted and reported; store errors are retried; duplicates in
// a chunk are fetched once; items that turn bad after the count (a source
// that changed) are reported failed, by position.
func TestFailuresPanicsDuplicates(t *testing.T) {
	var attempts sync.Map // key -> *atomic.Int64
	try := func(key string) int64 {
		v, _ := attempts.LoadOrStore(key, new(atomic.Int64))
		return v.(*atomic.Int64).Add(1)
	}
	var stored sync.Map
	src := warmup.Slice([]warmup.Item{
		{"flaky", 9}, {"broken", 8}, {"panics", 7}, {"dup", 6}, {"dup", 6}, {"store-flaky", 5}, {"store-panics", 4}, {"ok", 3},
	})
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e6, 10), ChunkSize: 100,
		Workers: 1, Retries: 2, RetryBackoff: time.Millisecond, Interval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "f", Source: src,
		Fetch: func(_ context.Context, key string) (any, time.Time, error) {
			n := try(key)
			switch {
			case key == "flaky" && n < 3:
				return nil, time.Time{}, errors.New("timeout")
			case key == "broken":
				return nil, time.Time{}, errors.New("gone")
			case key == "panics":
				panic("boom")
			}
			return key, time.Time{}, nil
		},
		Store: func(_ context.Context, key string, v any, _ time.Time) error {
			switch {
			case key == "store-flaky" && try("s:"+key) < 2:
				return errors.New("cache busy")
			case key == "store-panics":
				panic("store boom")
			}
			stored.Store(key, v)
			return nil
		}}))
	runFleet(t, w)
	// A handful of no-op fetches with 1 ms backoffs: 10 s is generous.
	st := waitPhase(t, w, "f", warmup.Done, 10*time.Second)
	assert.EqualValues(t, 8, st.Done)
	assert.EqualValues(t, 3, st.Failed)
	assert.ElementsMatch(t, []string{"broken", "panics", "store-panics"}, st.FailedKeys)
	assert.EqualValues(t, 2, st.Node.Panics)
	assert.EqualValues(t, 1, st.Node.Duplicates)
	assert.EqualValues(t, 2+2+1, st.Node.Retries, "flaky twice, broken twice, store-flaky once")
	for _, k := range []string{"flaky", "dup", "store-flaky", "ok"} {
		_, ok := stored.Load(k)
		assert.True(t, ok, k)
	}
	n, _ := attempts.Load("dup")
	assert.EqualValues(t, 1, n.(*atomic.Int64).Load(), "a duplicate key is fetched once")
	n, _ = attempts.Load("panics")
	assert.EqualValues(t, 1, n.(*atomic.Int64).Load(), "a panic is not retried")
}

// A value read before a delete + HoldOff is not stored (counted); one read
// after it is.
func TestHoldOffAfterDelete(t *testing.T) {
	const holdOff = 300 * time.Millisecond
	var stored sync.Map
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e6, 10), Workers: 1, HoldOff: holdOff})
	require.NoError(t, err)
	w.Deleted("held")
	w.Deleted("late")
	deletedAt := time.Now() // at or after both deletes
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "h", Source: warmup.Slice([]warmup.Item{{"held", 2}, {"late", 1}, {"free", 1}}),
		Fetch: func(_ context.Context, key string) (any, time.Time, error) {
			switch key {
			case "late": // read after the hold-off
				return key, deletedAt.Add(holdOff + 10*time.Millisecond), nil
			case "held": // read within it
				return key, deletedAt, nil
			}
			return key, time.Time{}, nil
		},
		Store: func(_ context.Context, key string, v any, _ time.Time) error { stored.Store(key, v); return nil }}))
	runFleet(t, w)
	st := waitPhase(t, w, "h", warmup.Done, 10*time.Second)
	_, held := stored.Load("held")
	_, late := stored.Load("late")
	_, free := stored.Load("free")
	assert.False(t, held, "a value read within the hold-off of a delete is not stored")
	assert.True(t, late, "a value read after the hold-off is stored")
	assert.True(t, free)
	assert.EqualValues(t, 1, st.Node.HeldOff)
	assert.EqualValues(t, 2, st.Node.Stored)
}

// A source that yields fewer items than it had when the warm was counted
// (it changed) has the missing ones reported failed; the warm finishes.
func TestSourceShorterThanCounted(t *testing.T) {
	var calls atomic.Int64
	src := warmup.Stream(func(yield func(string, float64) bool) {
		n := 30
		if calls.Add(1) > 1 { // every read after the count
			n = 25
		}
		for _, it := range items(n) {
			if !yield(it.Key, float64(100-len(it.Key))) {
				return
			}
		}
	})
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: localBudget(t, 1e6, 10), ChunkSize: 10,
		Workers: 1, Interval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background(), warmup.Warm{ID: "s", Source: src, Fetch: noFetch, Store: discard}))
	runFleet(t, w)
	st := waitPhase(t, w, "s", warmup.Done, 10*time.Second)
	assert.EqualValues(t, 30, st.Keys)
	assert.EqualValues(t, 5, st.Failed)
	assert.EqualValues(t, 25, st.Node.Fetched)
}
