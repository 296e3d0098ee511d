package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/simulate"
	"github.com/herdcap/herdcap/simulate/report"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// small is a scenario file that runs in a blink. Its origin is the
// lenient one (an unbounded queue that finishes work nobody waits for), on
// which the unprotected incident collapses for certain: these tests are of
// the command, not of the model.
const small = `{
  "name": "tiny",
  "duration": "10m",
  "clients": 2000,
  "origin": { "capacity": 20, "timeout": "5s", "unbounded_queue": true, "finish_abandoned": true },
  "protection": { "origin_budget": 16, "rollout_rate": 16, "cohorts": 20, "min_duration": "30s" },
  "trigger": { "kind": "incident", "at": "1m" },
  "bounds": [
    { "run": "protected", "metric": "peak_over_budget", "max": 1.1 },
    { "run": "unprotected", "metric": "collapsed", "min": 1 }
  ]
}`

// smallBounds is small's bounds, for withBounds to replace.
const smallBounds = `"bounds": [
    { "run": "protected", "metric": "peak_over_budget", "max": 1.1 },
    { "run": "unprotected", "metric": "collapsed", "min": 1 }
  ]`

// withBounds is small with only the bounds given.
func withBounds(t *testing.T, bounds string) string {
	t.Helper()
	require.Contains(t, small, smallBounds)
	return strings.Replace(small, smallBounds, `"bounds": [`+bounds+`]`, 1)
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func stormsim(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestScenarioFileTable(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	code, out, errOut := stormsim(t, "-q", "-scenario", f)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "== tiny: 2000 clients")
	assert.Contains(t, out, "bounds: PASS (2 of 2 hold)")
	assert.Empty(t, errOut)
}

// TestJSONDeterministic: -json prints the same bytes for the same seed,
// and other bytes for another seed.
func TestJSONDeterministic(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	code, a, errOut := stormsim(t, "-q", "-json", "-scenario", f)
	require.Equal(t, 0, code, errOut)
	_, b, _ := stormsim(t, "-q", "-json", "-scenario", f)
	assert.Equal(t, a, b)
	var cs []simulate.Comparison
	require.NoError(t, json.Unmarshal([]byte(a), &cs))
	require.Len(t, cs, 1)
	assert.Equal(t, "tiny", cs[0].Scenario.Name)
	assert.True(t, cs[0].Unprotected.Collapsed)
	_, c, _ := stormsim(t, "-q", "-json", "-seed", "7", "-scenario", f)
	assert.NotEqual(t, a, c)
}

func TestCheck(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	code, _, errOut := stormsim(t, "-q", "-check", "-scenario", f)
	assert.Equal(t, 0, code, errOut)

	strict := strings.Replace(small, `"metric": "collapsed", "min": 1`, `"metric": "collapsed", "max": 0`, 1)
	g := writeFile(t, "strict.json", strict)
	code, out, errOut := stormsim(t, "-q", "-check", "-scenario", g)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "tiny: bound failed: unprotected.collapsed <= 0 [unprotected.collapsed = 1]")
	assert.Contains(t, out, "bounds: FAIL")
	// Without -check the same failure is reported but not fatal.
	code, _, _ = stormsim(t, "-q", "-scenario", g)
	assert.Equal(t, 0, code)
}

func TestOut(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	dir := filepath.Join(t.TempDir(), "report")
	code, _, errOut := stormsim(t, "-q", "-out", dir, "-scenario", f)
	require.Equal(t, 0, code, errOut)
	for _, name := range []string{"index.html", "tiny.csv", "tiny-origin.png", "tiny-origin.svg", "tiny-hitrate.png", "tiny-changed.svg"} {
		_, err := os.Stat(filepath.Join(dir, name))
		assert.NoError(t, err, name)
	}
}

// TestBadInput: every bad input exits 2 with a message that names the
// problem, and never panics.
func TestBadInput(t *testing.T) {
	unknown := writeFile(t, "unknown.json", strings.Replace(small, `"timeout": "5s"`, `"timeout": "5s", "timout": "1s"`, 1))
	share := writeFile(t, "share.json", strings.Replace(small, `"kind": "incident", "at": "1m"`, `"kind": "reconnect-storm", "share": 1.5`, 1))
	notJSON := writeFile(t, "bad.json", "{")
	blocker := writeFile(t, "file", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"-clients", "-5"}, "-clients must be between 1 and 10000000, got -5"},
		{[]string{"-clients", "0"}, "-clients must be between 1 and 10000000, got 0"},
		{[]string{"-q", "-out", t.TempDir(), "-scenario", writeFile(t, "a.json", small), "-scenario", writeFile(t, "b.json", small)}, `-out: two scenarios are named "tiny"`},
		{[]string{"-clients", "20000000"}, "-clients must be between 1 and 10000000"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"-scenario", unknown}, "scenario.origin.timout: unknown field"},
		{[]string{"-scenario", share}, "scenario.trigger.share: must be in (0,1], got 1.5"},
		{[]string{"-scenario", notJSON}, "bad JSON"},
		{[]string{"-scenario", filepath.Join(t.TempDir(), "missing.json")}, "no such file"},
		{[]string{"-redis", "ftp://x"}, "-redis:"},
		{[]string{"-redis", "redis://127.0.0.1:/0"}, "must name a host and a port"}, // never a silent 6379
		{[]string{"-redis", "redis:///0"}, "must name a host and a port"},
		{[]string{"-bench", "-scenario", unknown}, "-bench runs the built-in incident"},
		{[]string{"-q", "-out", filepath.Join(blocker, "sub"), "-scenario", writeFile(t, "ok.json", small)}, "-out:"},
		{[]string{"-seeds", "0"}, "-seeds must be between 1 and 100, got 0"},
		{[]string{"-seeds", "101"}, "-seeds must be between 1 and 100, got 101"},
		{[]string{"-seeds", "2", "-out", t.TempDir()}, "-out draws one seed's runs"},
		{[]string{"-seeds", "2", "-bench"}, "-bench runs one seed"},
		{[]string{"-seeds", "2", "-seed", "18446744073709551615"}, "runs past the largest seed"},
		{[]string{"-scenario", "no-such-storm"}, "no built-in scenario of that name; the built-ins are: rogue-invalidate, reconnect-storm, incident, config-change"},
		{[]string{"-scenario", "dir/incident"}, "dir/incident: open dir/incident: no such file"},
		{[]string{"-scenario", "incident.json"}, "incident.json: open incident.json: no such file"},
	}
	for _, c := range cases {
		code, _, errOut := stormsim(t, c.args...)
		assert.Equal(t, 2, code, "%v: %s", c.args, errOut)
		assert.Contains(t, errOut, c.want, "%v", c.args)
	}
}

func TestBench(t *testing.T) {
	code, out, errOut := stormsim(t, "-q", "-bench", "-clients", "2000")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "benchmark: incident, 2000 clients, 10 nodes, 30m0s virtual, memory store")
	assert.Contains(t, out, "unprotected")
	assert.Contains(t, out, "peak RSS")
}

// TestDefaultScenarios: without -scenario the built-ins run, at the laptop
// size unless -clients says otherwise.
func TestDefaultScenarios(t *testing.T) {
	o, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	scs, err := scenarios(o)
	require.NoError(t, err)
	require.Len(t, scs, len(simulate.BuiltInNames()))
	for _, sc := range scs {
		assert.Equal(t, simulate.LaptopClients, sc.Clients)
	}
	o.clients, o.seed = 3000, 9
	scs, err = scenarios(o)
	require.NoError(t, err)
	assert.Equal(t, 3000, scs[0].Clients)
	assert.Equal(t, uint64(9), scs[0].Seed)
}

// TestProgress: runs shorter than the threshold print nothing; longer
// ones print a line every five seconds, and one when they end.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := progressPrinter(&b, time.Second, func() time.Time { return wall })
	at := func(d time.Duration, virtual time.Duration) {
		wall = wall.Add(d)
		p(simulate.Progress{Scenario: "x", Mode: simulate.Protected, Virtual: virtual, Duration: 100 * time.Second, Events: int64(virtual / time.Second)})
	}
	at(0, 0)
	at(500*time.Millisecond, 10*time.Second)
	assert.Empty(t, b.String(), "nothing within the first second")
	at(time.Second, 20*time.Second)
	assert.Equal(t, "stormsim: x protected: 20s of 1m40s virtual (20%), 20 events, 2s wall\n", b.String(), "a long run reports")
	b.Reset()
	at(time.Second, 30*time.Second)
	assert.Empty(t, b.String(), "then at most every five seconds")
	at(5*time.Second, 60*time.Second)
	assert.Contains(t, b.String(), "60%")
	b.Reset()
	at(100*time.Millisecond, 100*time.Second)
	assert.Equal(t, "stormsim: x protected: 1m40s of 1m40s virtual (100%), 100 events, 8s wall\n", b.String(), "and its end")

	// A short run (a second mode that ends within the threshold) says nothing.
	b.Reset()
	p(simulate.Progress{Scenario: "y", Mode: simulate.Unprotected, Virtual: 0, Duration: 100})
	p(simulate.Progress{Scenario: "y", Mode: simulate.Unprotected, Virtual: 100, Duration: 100})
	assert.Empty(t, b.String())
}

// TestProgressOnRealRuns: with a zero threshold, a real run prints its
// progress to stderr; -q silences it.
func TestProgressOnRealRuns(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	var e bytes.Buffer
	cfg := simulate.Config{Progress: progressPrinter(&e, 0, time.Now)}
	scs, err := scenarios(&options{files: fileList{f}})
	require.NoError(t, err)
	_, err = simulate.Compare(context.Background(), scs[0], cfg)
	require.NoError(t, err)
	assert.Contains(t, e.String(), "stormsim: tiny unprotected: 10m0s of 10m0s virtual (100%)")
	assert.Contains(t, e.String(), "stormsim: tiny protected: 10m0s of 10m0s virtual (100%)")
	code, _, errOut := stormsim(t, "-q", "-scenario", f)
	require.Equal(t, 0, code)
	assert.Empty(t, errOut)
}

// TestList: -list prints every built-in, a name and one sentence a line.
func TestList(t *testing.T) {
	code, out, errOut := stormsim(t, "-list")
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, errOut)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	names := simulate.BuiltInNames()
	require.Len(t, lines, len(names))
	for i, name := range names {
		f := strings.Fields(lines[i])
		require.Greater(t, len(f), 1, "%q: a name and a summary", lines[i])
		assert.Equal(t, name, f[0])
		assert.True(t, strings.HasSuffix(lines[i], "."), "%q: one whole sentence", lines[i])
		assert.Equal(t, 1, strings.Count(lines[i], ". ")+1, "%q: only the first sentence", lines[i])
	}
	assert.Contains(t, out, "reconnect-storm       A network blip drops 30% of the clients at once; each reconnect sets up a session at the origin.\n")
}

func TestFirstSentence(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "",
		"One. Two.":                  "One.",
		"Rates of 1.5x\n hold. More": "Rates of 1.5x hold.",
		"No stop":                    "No stop",
		"Why? Because.":              "Why?",
	} {
		assert.Equal(t, want, firstSentence(in), "%q", in)
	}
}

// TestBuiltInName: -scenario takes a built-in's name; a file of that name
// in the working directory wins, a directory does not.
func TestBuiltInName(t *testing.T) {
	code, out, errOut := stormsim(t, "-q", "-clients", "2000", "-scenario", "config-change", "-scenario", "reconnect-storm")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "== config-change: 2000 clients, 10 nodes, 30m0s virtual, seed 1, memory store")
	assert.Contains(t, out, "== reconnect-storm: 2000 clients")
	assert.Less(t, strings.Index(out, "== config-change"), strings.Index(out, "== reconnect-storm"), "in the order given")

	// Without -clients a built-in runs at the laptop size, a file at its own.
	f := writeFile(t, "tiny.json", small)
	scs, err := scenarios(&options{files: fileList{"reconnect-storm", f}})
	require.NoError(t, err)
	assert.Equal(t, simulate.LaptopClients, scs[0].Clients)
	assert.Equal(t, "reconnect-storm", scs[0].Name)
	assert.Equal(t, 2000, scs[1].Clients)

	t.Chdir(t.TempDir())
	require.NoError(t, os.Mkdir("incident", 0o755)) // say, an earlier -out incident
	scs, err = scenarios(&options{files: fileList{"incident"}})
	require.NoError(t, err)
	assert.Equal(t, "incident", scs[0].Name)
	require.NoError(t, os.WriteFile("rogue-invalidate", []byte(small), 0o644))
	scs, err = scenarios(&options{files: fileList{"rogue-invalidate"}})
	require.NoError(t, err)
	assert.Equal(t, "tiny", scs[0].Name, "a file of the name wins")
}

// TestUnknownName: a name that is neither a file nor a built-in exits 2
// and lists every built-in.
func TestUnknownName(t *testing.T) {
	code, out, errOut := stormsim(t, "-q", "-scenario", "incidnet")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, `-scenario "incidnet": no such file, and no built-in scenario of that name`)
	for _, name := range simulate.BuiltInNames() {
		assert.Contains(t, errOut, name)
	}
}

// TestSeedsDeterministic: -seeds runs its seeds in parallel, yet two runs
// print the same bytes; the JSON holds each metric's spread and every
// seed's runs, and the table reads in the order given.
func TestSeedsDeterministic(t *testing.T) {
	f := writeFile(t, "tiny.json", small)
	g := writeFile(t, "short.json", strings.Replace(strings.Replace(small, `"tiny"`, `"short"`, 1), `"10m"`, `"4m"`, 1))
	args := []string{"-q", "-seeds", "3", "-seed", "5", "-scenario", f, "-scenario", g}
	code, a, errOut := stormsim(t, append(args, "-json")...)
	require.Equal(t, 0, code, errOut)
	_, b, _ := stormsim(t, append(args, "-json")...)
	assert.Equal(t, a, b, "the same JSON, byte for byte")
	code, table, errOut := stormsim(t, args...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, table, "== tiny: 2000 clients, 10 nodes, 10m0s virtual, seeds 5..7 (3), memory store")
	assert.Contains(t, table, "== short: 2000 clients, 10 nodes, 4m0s virtual, seeds 5..7 (3), memory store")
	assert.Less(t, strings.Index(table, "== tiny"), strings.Index(table, "== short"), "in the order given")
	assert.Contains(t, table, "mean ± standard deviation [least–greatest] over the seeds")
	assert.Contains(t, table, "bounds: ")

	var ss []report.SeedSummary
	require.NoError(t, json.Unmarshal([]byte(a), &ss))
	require.Len(t, ss, 2)
	s := ss[0]
	assert.Equal(t, "tiny", s.Scenario.Name)
	assert.Equal(t, []uint64{5, 6, 7}, s.Seeds)
	require.Len(t, s.Runs, 3)
	var peak report.Spread
	for _, sp := range s.Unprotected {
		if sp.Metric == "peak_rps" {
			peak = sp
		}
	}
	require.Equal(t, "peak_rps", peak.Metric)
	var vs []float64
	for k, r := range s.Runs {
		assert.Equal(t, uint64(5+k), r.Seed)
		assert.Equal(t, uint64(5+k), r.Unprotected.Seed)
		vs = append(vs, r.Unprotected.PeakRPS)
	}
	// The spread is that of the seeds' own results.
	assert.Equal(t, 3, peak.N)
	assert.Equal(t, slices.Min(vs), peak.Min)
	assert.Equal(t, slices.Max(vs), peak.Max)
	assert.InDelta(t, (vs[0]+vs[1]+vs[2])/3, peak.Mean, 1e-3*peak.Mean)
	assert.Less(t, peak.Min, peak.Max, "seeds differ")
	collapsed := 0
	for _, r := range s.Runs {
		if r.Unprotected.Collapsed {
			collapsed++
		}
	}
	assert.Regexp(t, fmt.Sprintf(`(?m)^metastable collapse +%d of 3 +0 of 3$`, collapsed), table, "booleans as counts of the seeds")

	// Each seed is the run -seed would give on its own.
	code, one, errOut := stormsim(t, "-q", "-json", "-seed", "6", "-scenario", f)
	require.Equal(t, 0, code, errOut)
	var cs []simulate.Comparison
	require.NoError(t, json.Unmarshal([]byte(one), &cs))
	assert.Equal(t, cs[0].Unprotected, s.Runs[1].Unprotected)
	assert.Equal(t, cs[0].Protected, s.Runs[1].Protected)
}

// TestSeedsCheck: with -seeds, -check checks every seed and names each
// seed that failed, and no other.
func TestSeedsCheck(t *testing.T) {
	impossible := withBounds(t, `{ "run": "protected", "metric": "origin_calls", "max": 0 }`)
	code, a, errOut := stormsim(t, "-q", "-check", "-json", "-seeds", "3", "-seed", "2", "-scenario", writeFile(t, "impossible.json", impossible))
	assert.Equal(t, 1, code, errOut)
	for _, seed := range []string{"2", "3", "4"} {
		assert.Contains(t, errOut, "stormsim: tiny: seed "+seed+": bound failed: protected.origin_calls <= 0 [protected.origin_calls = ")
	}
	var ss []report.SeedSummary
	require.NoError(t, json.Unmarshal([]byte(a), &ss))
	assert.False(t, ss[0].Pass)

	// A bound only some seeds break names those seeds and no other.
	calls := map[uint64]int64{}
	least := int64(math.MaxInt64)
	for _, r := range ss[0].Runs {
		calls[r.Seed] = r.Protected.OriginCalls
		least = min(least, r.Protected.OriginCalls)
	}
	some := withBounds(t, fmt.Sprintf(`{ "run": "protected", "metric": "origin_calls", "max": %d }`, least))
	code, out, errOut := stormsim(t, "-q", "-check", "-seeds", "3", "-seed", "2", "-scenario", writeFile(t, "some.json", some))
	failing := 0
	for seed, n := range calls {
		named := strings.Contains(errOut, fmt.Sprintf("seed %d: bound failed", seed))
		assert.Equal(t, n > least, named, "seed %d (%d calls, least %d)", seed, n, least)
		assert.Equal(t, named, strings.Contains(out, fmt.Sprintf("  FAIL seed %d: protected.origin_calls <= %d", seed, least)), "the table names seed %d too", seed)
		if named {
			failing++
		}
	}
	require.Positive(t, failing, "the seeds differ in origin calls: %v", calls)
	assert.Contains(t, out, fmt.Sprintf("bounds: FAIL (every bound held on %d of 3 seeds)", 3-failing))
	assert.Equal(t, 1, code)
}

// TestWarnings: a valid scenario that will not show what it means is run,
// with a warning naming the field on stderr, -q or not.
func TestWarnings(t *testing.T) {
	f := writeFile(t, "paced.json", strings.Replace(small, `"rollout_rate": 16`, `"rollout_rate": 19, "admission_rate": 16`, 1))
	code, out, errOut := stormsim(t, "-q", "-scenario", f)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "== tiny")
	assert.Contains(t, errOut, "stormsim: warning: tiny (2000 clients): scenario.protection.rollout_rate: 19 clients per second")
}

// TestOutagesOnPrivateRedis: a scenario with Redis outages runs without
// -redis on a private redis-server stormsim starts for it (another
// scenario beside it stays on memory), and the report shows the failed
// calls.
func TestOutagesOnPrivateRedis(t *testing.T) {
	redistest.Require(t)
	out := strings.Replace(small, `"trigger":`, `"redis": { "outages": [ { "at": "3m", "for": "20s" } ] }, "trigger":`, 1)
	out = strings.Replace(out, `"tiny"`, `"tiny-outage"`, 1)
	code, table, errOut := stormsim(t, "-q", "-check", "-scenario", writeFile(t, "outage.json", out), "-scenario", writeFile(t, "tiny.json", small))
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, table, "== tiny-outage: 2000 clients, 10 nodes, 10m0s virtual, seed 1, redis store")
	assert.Contains(t, table, "== tiny: 2000 clients, 10 nodes, 10m0s virtual, seed 1, memory store")
	assert.Regexp(t, `redis calls failed in outages / rollout re-registrations +0 / 0 +[1-9][0-9]* / 0`, table)
}

// TestOutagesWithoutRedisServer: with no -redis and no redis-server in
// PATH, a scenario with Redis outages is refused (exit 2) with a message
// that names both ways out, and nothing is run.
func TestOutagesWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	out := strings.Replace(small, `"trigger":`, `"redis": { "outages": [ { "at": "3m", "for": "20s" } ] }, "trigger":`, 1)
	code, table, errOut := stormsim(t, "-q", "-scenario", writeFile(t, "outage.json", out))
	assert.Equal(t, 2, code)
	assert.Empty(t, table)
	assert.Contains(t, errOut, "tiny: its Redis outages need the Redis store: pass -redis")
	assert.Contains(t, errOut, "apt-get install -y redis-server")
}
