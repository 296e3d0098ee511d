package simulate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const minimal = `{"name":"t","clients":1000,"origin":{"capacity":10},"trigger":{"kind":"rogue-invalidate"}}`

func TestParseScenarioDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte(minimal))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), sc.Seed)
	assert.Equal(t, 30*time.Minute, sc.Duration.D())
	assert.Equal(t, 10, sc.Nodes)
	assert.Equal(t, time.Minute, sc.Client.PollInterval.D())
	assert.Equal(t, "slot", sc.Client.Backoff)
	assert.InDelta(t, 8, sc.Protection.OriginBudget, 1e-9, "0.8 × capacity")
	assert.InDelta(t, 8, sc.Protection.RolloutRate, 1e-9)
	assert.Equal(t, 2*time.Minute, sc.Trigger.At.D())
	assert.Equal(t, 1.0, sc.Trigger.Share)
	assert.Equal(t, 5, sc.Node.WarmKeys, "clients ÷ nodes ÷ 20")
}

// TestParseScenarioErrors: every bad input is an error wrapping
// ErrInvalidScenario that names the field's path; none panics.
func TestParseScenarioErrors(t *testing.T) {
	with := func(patch string) string {
		// patch is merged into the minimal scenario.
		var base, p map[string]any
		require.NoError(t, json.Unmarshal([]byte(minimal), &base))
		require.NoError(t, json.Unmarshal([]byte(patch), &p))
		merge(base, p)
		b, err := json.Marshal(base)
		require.NoError(t, err)
		return string(b)
	}
	cases := []struct {
		name, in, want string
	}{
		{"share above 1", with(`{"trigger":{"kind":"reconnect-storm","share":1.5}}`), "scenario.trigger.share: must be in (0,1], got 1.5"},
		{"negative share", with(`{"trigger":{"kind":"reconnect-storm","share":-0.5}}`), "scenario.trigger.share: must be in (0,1], got -0.5"},
		{"unknown top-level field", with(`{"clientz":5}`), "scenario.clientz: unknown field"},
		{"unknown nested field", with(`{"origin":{"capacity":10,"capacityy":5}}`), "scenario.origin.capacityy: unknown field"},
		{"unknown field in a bound", with(`{"bounds":[{"run":"protected","metric":"peak_rps","max":1,"maxx":2}]}`), "scenario.bounds[0].maxx: unknown field"},
		{"wrong case", with(`{"Clients":5}`), "scenario.Clients: unknown field"},
		{"zero clients", with(`{"clients":0}`), "scenario.clients: must be between 1 and 10000000, got 0"},
		{"absurd clients", with(`{"clients":20000000}`), "scenario.clients: must be between 1 and 10000000, got 20000000"},
		{"negative capacity", with(`{"origin":{"capacity":-3}}`), "scenario.origin.capacity: must not be negative, got -3"},
		{"zero capacity", `{"name":"t","clients":1000,"trigger":{"kind":"incident"}}`, "scenario.origin.capacity: must be > 0, got 0"},
		{"negative rollout rate", with(`{"protection":{"rollout_rate":-1}}`), "scenario.protection.rollout_rate: must not be negative, got -1"},
		{"negative duration", with(`{"client":{"poll_interval":"-5s"}}`), "scenario.client.poll_interval: must be between 100ms and 1h0m0s, got -5s"},
		{"bad duration", with(`{"duration":"soon"}`), `scenario.duration`},
		{"duration as number", with(`{"duration":60}`), `scenario.duration`},
		{"wrong type", with(`{"clients":"many"}`), "scenario.clients: want int"},
		{"nodes", with(`{"nodes":51}`), "scenario.nodes: must be between 1 and 50, got 51"},
		{"kind", with(`{"trigger":{"kind":"meteor"}}`), `scenario.trigger.kind: must be one of`},
		{"trigger after the end", with(`{"duration":"5m","trigger":{"kind":"incident","at":"6m"}}`), "scenario.trigger.at: must be in (0, duration = 5m0s), got 6m0s"},
		{"share of an invalidation", with(`{"trigger":{"kind":"incident","share":0.5}}`), "scenario.trigger.share: must be 1 for incident"},
		{"trigger node", with(`{"trigger":{"kind":"incident","node":10}}`), "scenario.trigger.node: must be between 0 and nodes-1 = 9, got 10"},
		{"cause", with(`{"trigger":{"kind":"reconnect-storm","cause":"solar"}}`), `scenario.trigger.cause: must be "blip" or "restart"`},
		{"config change needs a limit", with(`{"trigger":{"kind":"config-change"}}`), "scenario.trigger.limit: must be > 0, got 0"},
		{"factor", with(`{"trigger":{"kind":"config-change","limit":1,"factor":0.5}}`), "scenario.trigger.factor: must be in (1, 10000], got 0.5"},
		{"cache hit", with(`{"node":{"cache_hit":1}}`), "scenario.node.cache_hit: must be in [0,1), got 1"},
		{"backoff", with(`{"client":{"backoff":"pray"}}`), `scenario.client.backoff: must be "slot" or "jitter", got "pray"`},
		{"name", with(`{"name":"../etc"}`), `scenario.name: must be 1 to 64 of a-z`},
		{"too many polls", with(`{"clients":10000000,"duration":"24h","client":{"poll_interval":"100ms","copy_ttl":"1h"}}`), "scenario.clients: clients × duration ÷ client.poll_interval is"},
		{"bound metric", with(`{"bounds":[{"run":"protected","metric":"happiness","max":1}]}`), `scenario.bounds[0].metric: no such metric "happiness"`},
		{"bound run", with(`{"bounds":[{"run":"both","metric":"peak_rps","max":1}]}`), `scenario.bounds[0].run: must be "protected" or "unprotected"`},
		{"bound limits", with(`{"bounds":[{"run":"protected","metric":"peak_rps"}]}`), `scenario.bounds[0]: needs min or max`},
		{"bound any mixed", with(`{"bounds":[{"run":"protected","any":[{"run":"protected","metric":"peak_rps","max":1}]}]}`), `scenario.bounds[0]: a bound has either any`},
		{"trailing data", minimal + `{}`, "scenario: trailing data"},
		{"not JSON", `{"name":`, "scenario: bad JSON"},
		{"not an object", `[1,2]`, "scenario: want simulate.Scenario"},
		{"null", `null`, "scenario.name"},
		{"too large", `{"name":"` + strings.Repeat("a", maxScenarioBytes) + `"}`, "scenario: file is"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, err := ParseScenario([]byte(c.in))
			require.Error(t, err)
			assert.Nil(t, sc)
			assert.True(t, errors.Is(err, ErrInvalidScenario), "%v", err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if m, ok := v.(map[string]any); ok {
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, m)
				continue
			}
		}
		dst[k] = v
	}
}

func TestScale(t *testing.T) {
	sc := builtin(t, "reconnect-storm", 1_000_000)
	small, err := sc.Scale(10_000)
	require.NoError(t, err)
	assert.Equal(t, 10_000, small.Clients)
	assert.InDelta(t, sc.Origin.Capacity/100, small.Origin.Capacity, 1e-9)
	assert.InDelta(t, sc.Protection.AdmissionRate/100, small.Protection.AdmissionRate, 1e-9)
	assert.Equal(t, sc.Protection.Cohorts, small.Protection.Cohorts, "waves keep their count")
	assert.Equal(t, 1_000_000, sc.Clients, "the original is untouched")
	_, err = sc.Scale(0)
	assert.ErrorIs(t, err, ErrInvalidScenario)
	_, err = sc.Scale(MaxClients + 1)
	assert.ErrorIs(t, err, ErrInvalidScenario)
}

// TestBuiltInFiles: the built-ins parse, round-trip through JSON, and
// their names match their files.
func TestBuiltInFiles(t *testing.T) {
	scs, err := BuiltIn()
	require.NoError(t, err)
	for i, sc := range scs {
		assert.Equal(t, builtinOrder[i], sc.Name)
		assert.Equal(t, 1_000_000, sc.Clients)
		b, err := json.Marshal(sc)
		require.NoError(t, err)
		again, err := ParseScenario(b)
		require.NoError(t, err)
		assert.Equal(t, sc, again)
	}
}

// FuzzParseScenario: any input is parsed or refused with an error naming
// ErrInvalidScenario, never a panic; what parses is valid and round-trips.
func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(minimal))
	for _, name := range builtinOrder {
		b, err := builtinFS.ReadFile("scenarios/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"name":"x","clients":1,"origin":{"capacity":1e308},"trigger":{"kind":"config-change","limit":1e-300}}`))
	f.Add([]byte(`{"bounds":[{"any":[{"any":[{"any":[{"any":[{"any":[]}]}]}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenario(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidScenario) {
				t.Fatalf("error does not wrap ErrInvalidScenario: %v", err)
			}
			return
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("parsed scenario does not validate: %v", err)
		}
		b, err := json.Marshal(sc)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseScenario(b)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, b)
		}
		if _, err := again.Scale(1 + sc.Clients/2); err != nil && !errors.Is(err, ErrInvalidScenario) {
			t.Fatalf("scale: %v", err)
		}
	})
}
