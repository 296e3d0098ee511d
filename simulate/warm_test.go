package simulate

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cacheTrigger reports whether sc's trigger is about the node caches
// (content-push, cold-node, hot-key): no client is affected or
// converges, and TestCacheBuiltInBounds gates them.
func cacheTrigger(sc *Scenario) bool {
	return sc.warmKind() || sc.Trigger.Kind == KindHotKey
}

// TestCacheBuiltIns is the gate of the built-ins about the node caches
// (a model check: without -race) at gateClients, cold-node at twice that
// (at 20,000 clients its fixed origin budget, 39 calls a second, has a
// burst of one call, which leaves the guard's background lane, and so the
// warm, nothing: the scenario warns): both runs meet every bound they
// declare, and the figures that make their point hold. A pair of runs
// takes 0.3 to 1.2 s (measured). stormsim -check gates them at 100,000
// clients; under -race TestDeterministic and TestMemoryAgainstRedis run
// their code.
func TestCacheBuiltIns(t *testing.T) {
	modelCheck(t)
	n := 0
	for _, name := range builtinOrder {
		sc := builtin(t, name, gateClients)
		if !cacheTrigger(sc) {
			continue
		}
		n++
		if len(sc.Warnings()) > 0 {
			sc = builtin(t, name, 2*gateClients)
		}
		require.Empty(t, sc.Warnings())
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Compare(context.Background(), sc, Config{})
			require.NoError(t, err)
			for _, ch := range c.Checks {
				assert.True(t, ch.Pass, "%s: %s [%s]", name, ch.Bound, ch.Got)
			}
			u, p := c.Unprotected, c.Protected
			assert.False(t, p.Collapsed, "protected run collapsed")
			assert.True(t, p.CollapseJudged)
			assert.LessOrEqual(t, p.StormFailedShare, 0.01)
			assert.LessOrEqual(t, p.PeakOverCapacity, 1.05)
			if sc.Trigger.Kind == KindHotKey {
				assert.Equal(t, int64(1), p.HotKeyLeasePeak, "one fetch per lease across the fleet")
				assert.GreaterOrEqual(t, u.HotKeyFetches, int64(sc.Nodes), "one fetch per node per expiry, at least")
				assert.Equal(t, -1.0, p.Hit90S)
				return
			}
			assert.True(t, u.StormFailedShare >= 0.2 || u.Collapsed, "unprotected harm: %v failed", u.StormFailedShare)
			assert.Positive(t, p.WarmDoneS, "the warm went through every key")
			assert.Zero(t, p.WarmKeysFailed)
			assert.Equal(t, -1.0, u.WarmDoneS, "no warm unprotected")
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
