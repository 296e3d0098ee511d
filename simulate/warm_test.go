package simulate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cacheTrigger reports whether sc's trigger is about the node caches
// (content-push, cold-node, hot-key): no client is affected or
// converges, and TestCacheBuiltInBounds gates them.
func cacheTrigger(sc *Scenario) bool {
	return sc.warmKind() || sc.Trigger.Kind == KindHotKey
}

// TestCacheBuiltIns checks the mechanics of the built-ins about the node
// caches on small copies (5,000 clients, 8 minutes, an origin 8 × larger
// so that the fixed budget's burst leaves the guard's background lane
// something): the warm fetches every key and the node hit rate comes
// back, slow start and the fill leases run, and hot-key's leases let one
// fetch through per lease where the unprotected fleet fetches once per
// node at least. Their gate, both runs and every declared bound at
// their size, is stormsim -check at 100,000 clients (CI): under -race the
// unprotected storms would take a minute here (measured: 37 to 66 s each
// at 20,000 to 40,000 clients).
func TestCacheBuiltIns(t *testing.T) {
	n := 0
	for _, name := range builtinOrder {
		sc := builtin(t, name, 5000)
		if !cacheTrigger(sc) {
			continue
		}
		n++
		sc.Duration = Duration(8 * time.Minute)
		sc.Origin.Capacity *= 8
		sc.Protection.OriginBudget *= 8
		require.NoError(t, sc.Validate())
		require.Empty(t, sc.Warnings())
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := Run(context.Background(), sc, Protected, Config{})
			require.NoError(t, err)
			assert.LessOrEqual(t, p.StormFailedShare, 0.01)
			assert.LessOrEqual(t, p.PeakOverCapacity, 1.05)
			if sc.Trigger.Kind == KindHotKey {
				assert.Equal(t, int64(1), p.HotKeyLeasePeak, "one fetch per lease across the fleet")
				u, err := Run(context.Background(), sc, Unprotected, Config{})
				require.NoError(t, err)
				assert.GreaterOrEqual(t, u.HotKeyFetches, int64(sc.Nodes), "one fetch per node per expiry, at least")
				return
			}
			assert.Positive(t, p.WarmDoneS, "the warm fetched every key")
			assert.Zero(t, p.WarmFailed)
			assert.Zero(t, p.WarmKeysFailed)
			assert.Less(t, p.WarmKey90, p.WarmKeys, "a skewed popularity: fewer keys carry 90%")
			assert.GreaterOrEqual(t, p.Hit90S, 0.0)
			assert.Positive(t, p.NodeHitRate)
		})
	}
	assert.Equal(t, 3, n, "content-push, cold-node, hot-key")
}

// TestZipfKeys: node.zipf skews the keys' popularity (key 0 the most
// popular, the first keys carrying most clients) and is deterministic;
// without it the keys are the fixed hash, every key about as popular.
func TestZipfKeys(t *testing.T) {
	sc := &Scenario{Name: "z", Clients: 20000, Origin: OriginSpec{Capacity: 100}, Trigger: Trigger{Kind: KindRogueInvalidate}}
	sc.Defaults()
	sc.Node.Keys = 1000
	require.Nil(t, zipfKeys(sc))
	sc.Node.Zipf = 1
	require.NoError(t, sc.Validate())
	a, b := zipfKeys(sc), zipfKeys(sc)
	require.Equal(t, a, b)
	counts := make([]int, sc.Node.Keys)
	for _, k := range a {
		counts[k]++
	}
	// Zipf(1) over 1000 keys: key 0 has 1 ÷ H(1000) ≈ 13.4% of the
	// clients, the first 100 keys about 69%.
	assert.InDelta(t, 0.134, float64(counts[0])/float64(sc.Clients), 0.01)
	head := 0
	for _, c := range counts[:100] {
		head += c
	}
	assert.InDelta(t, 0.69, float64(head)/float64(sc.Clients), 0.02)
	assert.Greater(t, counts[0], counts[1])
	assert.Greater(t, counts[1], counts[10])
}

// TestWarmFieldsValidate: the warm-up settings are refused out of range,
// naming the field, and draw a warning for a trigger they do not apply to.
func TestWarmFieldsValidate(t *testing.T) {
	_, err := ParseScenario([]byte(`{"name": "x", "clients": 1000, "origin": {"capacity": 10}, "trigger": {"kind": "incident"}, "node": {"zipf": 5}}`))
	require.ErrorIs(t, err, ErrInvalidScenario)
	assert.ErrorContains(t, err, "scenario.node.zipf: must be in [0, 4]")
	sc, err := ParseScenario([]byte(`{"name": "x", "clients": 1000, "origin": {"capacity": 10}, "trigger": {"kind": "incident"}, "protection": {"slow_start": "1m"}}`))
	require.NoError(t, err, "ignored for another trigger")
	assert.Contains(t, sc.Warnings(), "scenario.protection.slow_start: applies to cold-node only: ignored for incident")
	for _, tc := range []struct {
		kind, json, want string
	}{
		{"content-push", `"protection": {"warm_workers": 2000}`, "scenario.protection.warm_workers: must be between 1 and 1024"},
		{"content-push", `"protection": {"warm_chunk": 200000}`, "scenario.protection.warm_chunk: must be between 1 and 100000"},
		{"cold-node", `"protection": {"slow_start": "2h"}`, "scenario.protection.slow_start: must be between 1s and 1h0m0s"},
		{"hot-key", `"protection": {"fill_lease": "2h"}`, "scenario.protection.fill_lease: must be between 1ms and 1h0m0s"},
	} {
		_, err := ParseScenario([]byte(`{"name": "x", "clients": 1000, "origin": {"capacity": 10}, "trigger": {"kind": "` + tc.kind + `"}, ` + tc.json + `}`))
		require.ErrorIs(t, err, ErrInvalidScenario, tc.json)
		assert.ErrorContains(t, err, tc.want)
	}
	sc, err = ParseScenario([]byte(`{"name": "x", "clients": 1000, "origin": {"capacity": 10}, "trigger": {"kind": "hot-key"}}`))
	require.NoError(t, err)
	sc.Node.CacheTTL = 0 // no node cache: nothing to expire
	assert.ErrorContains(t, sc.Validate(), "scenario.node.cache_ttl: must be above 0 for hot-key")
}
