package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/simulate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// small is a scenario file that runs in a blink.
const small = `{
  "name": "tiny",
  "duration": "10m",
  "clients": 2000,
  "origin": { "capacity": 20, "timeout": "5s" },
  "protection": { "origin_budget": 16, "rollout_rate": 20, "cohorts": 20, "min_duration": "30s" },
  "trigger": { "kind": "incident", "at": "1m" },
  "bounds": [
    { "run": "protected", "metric": "peak_over_budget", "max": 1.1 },
    { "run": "unprotected", "metric": "collapsed", "min": 1 }
  ]
}`

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
	require.Len(t, scs, 4)
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
