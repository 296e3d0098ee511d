package simulate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/invalidate"
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
	assert.Equal(t, 1, sc.Node.Keys, "clients ÷ 1000")
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
		{"infinite capacity", strings.Replace(minimal, `"capacity":10`, `"capacity":1e999`, 1), "scenario.origin.capacity: want float64, got JSON number 1e999"},
		{"zero capacity", `{"name":"t","clients":1000,"trigger":{"kind":"incident"}}`, "scenario.origin.capacity: must be > 0, got 0"},
		{"negative rollout rate", with(`{"protection":{"rollout_rate":-1}}`), "scenario.protection.rollout_rate: must not be negative, got -1"},
		{"negative duration", with(`{"client":{"poll_interval":"-5s"}}`), "scenario.client.poll_interval: must be between 100ms and 1h0m0s, got -5s"},
		{"bad duration", with(`{"duration":"soon"}`), `scenario.duration`},
		{"fractional duration", with(`{"duration":"90500ms"}`), "scenario.duration: must be a whole number of seconds, got 1m30.5s"},
		{"duration as number", with(`{"duration":60}`), `scenario.duration`},
		{"wrong type", with(`{"clients":"many"}`), "scenario.clients: want int"},
		{"nodes", with(`{"nodes":51}`), "scenario.nodes: must be between 1 and 50, got 51"},
		{"kind", with(`{"trigger":{"kind":"meteor"}}`), `scenario.trigger.kind: must be one of`},
		{"trigger after the end", with(`{"duration":"5m","trigger":{"kind":"incident","at":"6m"}}`), "scenario.trigger.at: must be in (0, duration = 5m0s), got 6m0s"},
		{"share of an invalidation", with(`{"trigger":{"kind":"incident","share":0.5}}`), "scenario.trigger.share: must be 1 for incident"},
		{"trigger node", with(`{"trigger":{"kind":"incident","node":10}}`), "scenario.trigger.node: must be between 0 and nodes-1 = 9, got 10"},
		{"cause", with(`{"trigger":{"kind":"reconnect-storm","cause":"solar"}}`), `scenario.trigger.cause: must be "blip", "restart" or "cold-start"`},
		{"cold start share", with(`{"trigger":{"kind":"reconnect-storm","cause":"cold-start","share":0.5}}`), "scenario.trigger.share: must be 1 for cause cold-start"},
		{"config change needs a limit", with(`{"trigger":{"kind":"config-change"}}`), "scenario.trigger.limit: must be > 0, got 0"},
		{"factor", with(`{"trigger":{"kind":"config-change","limit":1,"factor":0.5}}`), "scenario.trigger.factor: must be in (1, 10000], got 0.5"},
		{"old cache hit field", with(`{"node":{"cache_hit":0.8}}`), "scenario.node.cache_hit: unknown field"},
		{"backoff", with(`{"client":{"backoff":"pray"}}`), `scenario.client.backoff: must be "slot", "jitter", "none", got "pray"`},
		{"unprotected slot", with(`{"client":{"unprotected_backoff":"slot"}}`), `scenario.client.unprotected_backoff: must be "none", "jitter", got "slot"`},
		{"hint jitter", with(`{"client":{"hint_jitter":"2m"}}`), "scenario.client.hint_jitter: must be between 0s and 1m0s, got 2m0s"},
		{"tiny origin budget", with(`{"protection":{"origin_budget":1e-300}}`), "scenario.protection.origin_budget: must be between 0.001 and 1e+09 per second, got 1e-300"},
		{"headroom floor above ceiling", with(`{"protection":{"headroom":{"floor":6,"ceiling":5}}}`), "scenario.protection.headroom.floor: 6 is above protection.headroom.ceiling 5"},
		{"headroom floor above capacity", with(`{"protection":{"headroom":{"floor":11,"ceiling":20}}}`), "scenario.protection.headroom.floor: 11 per second is above origin.capacity 10"},
		{"headroom negative ceiling", with(`{"protection":{"headroom":{"ceiling":-1}}}`), "scenario.protection.headroom.ceiling: must not be negative, got -1"},
		{"headroom initial outside", with(`{"protection":{"headroom":{"floor":1,"ceiling":5,"initial":6}}}`), "scenario.protection.headroom.initial: 6 is outside [floor 1, ceiling 5]"},
		{"headroom short interval", with(`{"protection":{"headroom":{"interval":"10ms"}}}`), "scenario.protection.headroom.interval: must be between 100ms and 1m0s, got 10ms"},
		{"headroom negative tolerance", with(`{"protection":{"headroom":{"tolerance":-1}}}`), "scenario.protection.headroom.tolerance: must be above 0 and at most 100, got -1"},
		{"calls per client below 1", with(`{"protection":{"calls_per_client":0.5}}`), "scenario.protection.calls_per_client: must be between 1 and 100, got 0.5"},
		{"calls per client above 100", with(`{"protection":{"headroom":{},"calls_per_client":101}}`), "scenario.protection.calls_per_client: must be between 1 and 100, got 101"},
		{"tiny capacity", with(`{"origin":{"capacity":1e-300}}`), "scenario.origin.capacity: must be between 0.001 and 1e+09 per second, got 1e-300"},
		{"huge capacity", with(`{"origin":{"capacity":1e300}}`), "scenario.origin.capacity: must be between 0.001 and 1e+09 per second, got 1e+300"},
		{"tiny push budget", with(`{"protection":{"push_budget":1e-9}}`), "scenario.protection.push_budget: must be between"},
		{"tiny admission", with(`{"protection":{"admission_rate":0.0001}}`), "scenario.protection.admission_rate: must be between"},
		{"huge limit", with(`{"trigger":{"kind":"config-change","limit":1e12}}`), "scenario.trigger.limit: must be between 0.001 and 1e+09 per second, got 1e+12"},
		{"limit times factor", with(`{"trigger":{"kind":"config-change","limit":1e6,"factor":10000}}`), "scenario.trigger.factor: trigger.limit × trigger.factor is 1e+10 per second, more than 1e+09"},
		{"limit on another trigger", with(`{"trigger":{"kind":"incident","limit":-2}}`), "scenario.trigger.limit: must not be negative, got -2"},
		{"few cohorts", with(`{"protection":{"cohorts":5}}`), "scenario.protection.cohorts: must be between 10 and 1048576, got 5"},
		{"keys", with(`{"node":{"keys":-1}}`), "scenario.node.keys: must be between 1 and 10000000, got -1"},
		{"cache entries", with(`{"clients":10000000,"nodes":50,"node":{"keys":10000000},"client":{"poll_interval":"1h","copy_ttl":"2h"}}`), "scenario.node.keys: node.keys × nodes is 500000000 cache entries, more than 50000000"},
		{"cache ttl", with(`{"node":{"cache_ttl":"48h"}}`), "scenario.node.cache_ttl: must be between 0s and 24h0m0s, got 48h0m0s"},
		{"retry tokens", with(`{"client":{"retry_tokens":5000}}`), "scenario.client.retry_tokens: must be between 1 and 1000, got 5000"},
		{"retry ratio", with(`{"client":{"retry_ratio":-1}}`), "scenario.client.retry_ratio: must be in [0.000001, retry_tokens], got -1"},
		{"max queue", with(`{"origin":{"max_queue":"-4s"}}`), "scenario.origin.max_queue: must be between 1ms and 1h0m0s, got -4s"},
		{"concurrency", with(`{"origin":{"concurrency":-1}}`), "scenario.origin.concurrency: must be between 1 and 10000, got -1"},
		{"service cv", with(`{"origin":{"service_cv":11}}`), "scenario.origin.service_cv: must be in [0, 10], got 11"},
		{"degrade", with(`{"origin":{"degrade":-1}}`), "scenario.origin.degrade: must be in [0, 10], got -1"},
		{"redis latency", with(`{"redis":{"latency":"2s"}}`), "scenario.redis.latency: must be between 0s and 1s, got 2s"},
		{"redis failure", with(`{"redis":{"failure":"panic"}}`), `scenario.redis.failure: must be "local", "open", "closed", got "panic"`},
		{"outage at", with(`{"redis":{"outages":[{"at":"0s","for":"10s"}]}}`), "scenario.redis.outages[0].at: must be in (0, duration = 30m0s), got 0s"},
		{"outage for", with(`{"redis":{"outages":[{"at":"3m"}]}}`), "scenario.redis.outages[0].for: must be between 1ms and 1h0m0s, got 0s"},
		{"outage past the end", with(`{"redis":{"outages":[{"at":"29m","for":"1m"}]}}`), "scenario.redis.outages[0].for: must end before the run does"},
		{"outage overlap", with(`{"redis":{"outages":[{"at":"3m","for":"1m"},{"at":"3m30s","for":"1m"}]}}`), "scenario.redis.outages[1].at: must be after the end of redis.outages[0]"},
		{"outage over the trigger", with(`{"redis":{"outages":[{"at":"1m","for":"1m"}]}}`), "scenario.redis.outages[0]: covers trigger.at = 2m0s"},
		{"unknown outage field", with(`{"redis":{"outages":[{"at":"3m","for":"1s","lose":true}]}}`), "scenario.redis.outages[0].lose: unknown field"},
		{"change at", with(`{"origin":{"changes":[{"at":"0s","factor":0.5}]}}`), "scenario.origin.changes[0].at: must be in (0, duration = 30m0s), got 0s"},
		{"change factor", with(`{"origin":{"changes":[{"at":"3m","factor":0}]}}`), "scenario.origin.changes[0].factor: must be in [0.001, 100], got 0"},
		{"change overlap", with(`{"origin":{"changes":[{"at":"3m","factor":0.5,"for":"2m"},{"at":"4m","factor":2}]}}`), "scenario.origin.changes[1].at: must be after the end of origin.changes[0]"},
		{"change after forever", with(`{"origin":{"changes":[{"at":"3m","factor":0.5},{"at":"9m","factor":2}]}}`), "scenario.origin.changes[1].at: must be after the end of origin.changes[0]"},
		{"tick", with(`{"protection":{"tick":"1ms"}}`), "scenario.protection.tick: must be between 10ms and 1m0s, got 1ms"},
		{"min duration", with(`{"protection":{"min_duration":"10ms"}}`), "scenario.protection.min_duration: must be between 1s and 24h0m0s, got 10ms"},
		{"downtime", with(`{"trigger":{"kind":"reconnect-storm","cause":"restart","downtime":"2h"}}`), "scenario.trigger.downtime: must be between 0s and 1h0m0s, got 2h0m0s"},
		{"nan factor", with(`{"trigger":{"kind":"config-change","limit":1,"factor":1}}`), "scenario.trigger.factor: must be in (1, 10000], got 1"},
		{"long description", with(`{"description":"` + strings.Repeat("x", 5000) + `"}`), "scenario.description: must be at most 4096 bytes, got 5000"},
		{"bound min above max", with(`{"bounds":[{"run":"protected","metric":"peak_rps","min":2,"max":1}]}`), "scenario.bounds[0]: min (2) is above max (1): the bound can never hold"},
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
	// Rates scaled below what the limiter takes are refused, by field.
	cc := builtin(t, "config-change", 1_000_000)
	_, err = cc.Scale(1)
	assert.ErrorIs(t, err, ErrInvalidScenario)
	assert.ErrorContains(t, err, "scenario.trigger.limit: must be between 0.001 and 1e+09 per second")
	_, err = sc.Scale(MaxClients + 1)
	assert.ErrorIs(t, err, ErrInvalidScenario)
	// The headroom's bounds scale too, on the copy's own spec.
	hr := builtin(t, "misconfigured-budget", 1_000_000)
	h := *hr.Protection.Headroom
	for _, n := range []int{10_000, 1_000_000} {
		s, err := hr.Scale(n)
		require.NoError(t, err)
		f := float64(n) / 1e6
		assert.InDelta(t, h.Ceiling*f, s.Protection.Headroom.Ceiling, 1e-9)
		assert.InDelta(t, h.Floor*f, s.Protection.Headroom.Floor, 1e-9)
		assert.InDelta(t, h.Initial*f, s.Protection.Headroom.Initial, 1e-9)
		assert.NotSame(t, hr.Protection.Headroom, s.Protection.Headroom)
	}
	assert.Equal(t, h, *hr.Protection.Headroom, "the original is untouched")
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

// TestGuardMinCohortsMatchesInvalidate: the fewest cohorts a scenario
// accepts are the fewest invalidate's default guard lets a scenario's
// rollout (scope everything, so guarded) have.
func TestGuardMinCohortsMatchesInvalidate(t *testing.T) {
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{})
	require.NoError(t, err)
	r := invalidate.Rollout{ID: "few", Scope: invalidate.ScopeAll, Cohorts: guardMinCohorts - 1, Rate: 1, Clients: 1, By: "t"}
	_, err = c.Start(t.Context(), r)
	require.ErrorIs(t, err, invalidate.ErrInvalidRollout)
	r.ID, r.Cohorts = "enough", guardMinCohorts
	_, err = c.Start(t.Context(), r)
	require.NoError(t, err)
}
