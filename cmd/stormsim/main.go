// Command stormsim replays cache-invalidation and reconnect storms in
// virtual time, unprotected and through herdcap, and compares the two.
//
// With no arguments it runs every built-in scenario (stormsim -list names
// them: rogue-invalidate, reconnect-storm, incident, config-change, ...) at
// a laptop-friendly size and prints a comparison table. Flags:
//
//	-scenario NAME|FILE  run a built-in by name, or the scenario in a JSON
//	                     file (repeatable), instead of every built-in
//	-list                print the built-ins, a name and a one-sentence
//	                     summary a line, and exit
//	-clients N           resize every scenario to N clients (rates scale with it)
//	-seed N              override the scenarios' seed
//	-seeds N             run seeds seed..seed+N-1 (1 to 100) and report each
//	                     metric's mean and spread
//	-json                print the results as JSON instead of the table
//	-out DIR             write per-second CSV, PNG and SVG charts and index.html under DIR
//	-check               exit 1 when a scenario's declared bounds fail (on any seed)
//	-redis URL           coordinate through Redis (redis://host:port/db) instead of memory;
//	                     without it, scenarios with Redis outages (redis-outage) run on
//	                     a private redis-server stormsim starts (it must be installed)
//	-bench               run the scale benchmark: the incident at 1,000,000 clients
//	-q                   no progress on stderr
//
// # Scenarios
//
// -scenario takes a path or a built-in's name. A regular file of that path
// wins; otherwise a built-in of that name runs (at 100,000 clients unless
// -clients says otherwise; a file runs at its own size). An argument that
// looks like a path (it has a separator or ends in .json) and is missing is
// reported as the file error; any other unknown name exits 2 with the list
// of built-ins.
//
// # Seeds
//
// -seeds N runs each scenario with N seeds, from -seed (or the scenario's
// own) up, several at a time: at most GOMAXPROCS runs (two per
// comparison) and 2,000,000 simulated clients at once. The output does not
// depend on the order runs finish in: the same flags print the same bytes.
// The table gives, per scenario and mode, each metric's mean ± sample
// standard deviation [least–greatest] over the seeds (booleans as "k of
// N"; a metric that reads -1 for "never" is summarised over the seeds that
// have a value, and says on how many), then the bounds on every seed. With
// -json it prints one report.SeedSummary per scenario:
//
//	[{"scenario": {...}, "seeds": [1, 2, 3], "store": "memory",
//	  "unprotected": [{"metric": "peak_rps", "n": 3, "mean": ..., "min": ...,
//	                   "max": ..., "stddev": ...}, ...],
//	  "protected": [...],
//	  "runs": [{"seed": 1, "pass": true, "checks": [...],
//	            "unprotected": {...}, "protected": {...}}, ...],
//	  "pass": true}]
//
// -check with -seeds checks the bounds of every seed and names each failed
// one with its seed ("stormsim: incident: seed 3: bound failed: ...").
// -out draws one seed's runs and takes no -seeds.
//
// # Report
//
// -out writes, per scenario, NAME.csv (one row per virtual second, a column
// per series and mode, latency_p99_s empty in a second that completed no
// need), charts of origin load (with the capacity and the origin budget),
// goodput, client errors, the clients' time-to-data p99 per second,
// connected clients, hit rate and clients changed per second, unprotected
// against protected, as PNG and SVG, and index.html, which embeds the
// charts and explains each verdict (collapse, recovery, convergence against
// the schedule, each bound) beside the table.
//
// Exit status: 0 on success, 1 when -check finds a failed bound, 2 on bad
// input or a failed run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisserver"
	"github.com/herdcap/herdcap/simulate"
	"github.com/herdcap/herdcap/simulate/report"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// maxSeeds is the most seeds -seeds takes.
const maxSeeds = 100

// maxClientsInFlight bounds the clients simulated at once across parallel
// comparisons (each comparison holds two runs): about the memory of one
// comparison at 1,000,000 clients.
const maxClientsInFlight = 2_000_000

type options struct {
	files    fileList
	clients  int
	seed     uint64
	seeds    int
	list     bool
	json     bool
	out      string
	check    bool
	redisURL string
	bench    bool
	quiet    bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("stormsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: stormsim [flags]\n\n"+
			"Replays cache-invalidation and reconnect storms in virtual time, unprotected\n"+
			"and through herdcap, and compares the two. Without -scenario it runs every\n"+
			"built-in (see -list) at 100,000 clients.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit status: 0 on success, 1 when -check finds a failed bound, 2 on bad input\nor a failed run.\n")
	}
	fs.Var(&o.files, "scenario", "run `NAME|FILE`: a built-in scenario by name (see -list) or a scenario's JSON file (repeatable) instead of every built-in")
	fs.BoolVar(&o.list, "list", false, "print the built-in scenarios, one a line, and exit")
	fs.IntVar(&o.clients, "clients", 0, "resize every scenario to `N` clients, 1 to 10000000 (default: built-ins at 100000, files at their own size)")
	fs.Uint64Var(&o.seed, "seed", 0, "override the scenarios' seed `N` (0: keep)")
	fs.IntVar(&o.seeds, "seeds", 1, "run each scenario with `N` seeds, the seed to seed+N-1 (1 to 100), and report each metric's mean and spread")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of the table")
	fs.StringVar(&o.out, "out", "", "write per-second CSV, PNG/SVG charts and index.html under `DIR` (one seed only)")
	fs.BoolVar(&o.check, "check", false, "exit 1 when a scenario's declared bounds fail (on any seed)")
	fs.StringVar(&o.redisURL, "redis", "", "coordinate through the Redis at `URL` (redis://host:port/db)")
	fs.BoolVar(&o.bench, "bench", false, "run the scale benchmark (the incident at 1,000,000 clients, 10 nodes, 30 virtual minutes) and report wall time and peak RSS")
	fs.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (scenario names and files go after -scenario)", fs.Arg(0))
	}
	clientsSet := false
	fs.Visit(func(f *flag.Flag) { clientsSet = clientsSet || f.Name == "clients" })
	if (clientsSet || o.clients != 0) && (o.clients < 1 || o.clients > simulate.MaxClients) {
		// Left out, it means each scenario's own size (the built-ins at
		// simulate.LaptopClients); given, it must be a size.
		return nil, fmt.Errorf("-clients must be between 1 and %d, got %d", simulate.MaxClients, o.clients)
	}
	if o.seeds < 1 || o.seeds > maxSeeds {
		return nil, fmt.Errorf("-seeds must be between 1 and %d, got %d", maxSeeds, o.seeds)
	}
	if o.seed > math.MaxUint64-uint64(o.seeds-1) {
		return nil, fmt.Errorf("-seed %d with -seeds %d runs past the largest seed, %d", o.seed, o.seeds, uint64(math.MaxUint64))
	}
	if o.bench && len(o.files) > 0 {
		return nil, errors.New("-bench runs the built-in incident; it takes no -scenario")
	}
	if o.bench && o.seeds > 1 {
		return nil, errors.New("-bench runs one seed; it takes no -seeds")
	}
	if o.out != "" && o.seeds > 1 {
		return nil, errors.New("-out draws one seed's runs: use it without -seeds (pick the seed with -seed)")
	}
	return &o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	if o.list {
		if err := list(stdout); err != nil {
			fmt.Fprintln(stderr, "stormsim:", err)
			return 2
		}
		return 0
	}
	cfg := simulate.Config{}
	if o.redisURL != "" {
		ro, err := parseRedisURL(o.redisURL)
		if err != nil {
			fmt.Fprintln(stderr, "stormsim: -redis:", err)
			return 2
		}
		cfg.Redis = ro
	}
	if !o.quiet {
		cfg.Progress = progressPrinter(stderr, time.Second, time.Now)
	}
	if o.bench {
		return bench(ctx, o, cfg, stdout, stderr)
	}
	scs, err := scenarios(o)
	if err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	// What a valid scenario will not show as meant (a rollout the origin
	// budget will pace, a run too short to judge collapse): always said,
	// -q or not.
	for _, sc := range scs {
		for _, w := range sc.Warnings() {
			fmt.Fprintf(stderr, "stormsim: warning: %s (%d clients): %s\n", sc.Name, sc.Clients, w)
		}
	}
	if o.out != "" {
		if err := uniqueNames(scs); err != nil {
			fmt.Fprintln(stderr, "stormsim: -out:", err)
			return 2
		}
	}
	// Scenarios with Redis outages run on Redis only: without -redis, on
	// a private redis-server started for them (the others stay on memory).
	var outageRedis *redis.Options
	if cfg.Redis == nil {
		if names := outageScenarios(scs); len(names) > 0 {
			srv, err := redisserver.Start(redisserver.Config{})
			if err != nil {
				fmt.Fprintf(stderr, "stormsim: %s: its Redis outages need the Redis store: pass -redis redis://host:port/db, or install redis-server (%s) for stormsim to start a private one: %v\n",
					strings.Join(names, ", "), redisserver.InstallHint, err)
				return 2
			}
			defer func() {
				if err := srv.Stop(); err != nil {
					fmt.Fprintln(stderr, "stormsim:", err)
				}
			}()
			outageRedis = srv.Options()
		}
	}
	runs, err := compareAll(ctx, scs, o.seeds, cfg, outageRedis)
	if err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	if o.seeds > 1 {
		return reportSeeds(o, runs, stdout, stderr)
	}
	cs := make([]*simulate.Comparison, len(runs))
	for i, r := range runs {
		cs[i] = r[0]
	}
	if o.json {
		b, err := json.MarshalIndent(cs, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "stormsim:", err)
			return 2
		}
		stdout.Write(append(b, '\n'))
	} else if err := report.Table(stdout, cs); err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	if o.out != "" {
		if err := report.WriteDir(o.out, cs); err != nil {
			fmt.Fprintln(stderr, "stormsim: -out:", err)
			return 2
		}
		if !o.quiet {
			fmt.Fprintf(stderr, "stormsim: wrote the report to %s\n", o.out)
		}
	}
	if o.check {
		failed := 0
		for _, c := range cs {
			for _, ch := range c.Checks {
				if !ch.Pass {
					failed++
					fmt.Fprintf(stderr, "stormsim: %s: bound failed: %s [%s]\n", c.Scenario.Name, ch.Bound, ch.Got)
				}
			}
		}
		if failed > 0 {
			return 1
		}
	}
	return 0
}

// reportSeeds prints the mean and spread of each scenario's seeds, and
// with -check names every seed whose bounds failed.
func reportSeeds(o *options, runs [][]*simulate.Comparison, stdout, stderr io.Writer) int {
	sums := make([]*report.SeedSummary, len(runs))
	for i, r := range runs {
		s, err := report.Summarize(r)
		if err != nil {
			fmt.Fprintln(stderr, "stormsim:", err)
			return 2
		}
		sums[i] = s
	}
	if o.json {
		b, err := json.MarshalIndent(sums, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "stormsim:", err)
			return 2
		}
		stdout.Write(append(b, '\n'))
	} else if err := report.SeedTable(stdout, sums); err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	if o.check {
		failed := 0
		for _, s := range sums {
			for _, r := range s.Runs {
				for _, ch := range r.Checks {
					if !ch.Pass {
						failed++
						fmt.Fprintf(stderr, "stormsim: %s: seed %d: bound failed: %s [%s]\n", s.Scenario.Name, r.Seed, ch.Bound, ch.Got)
					}
				}
			}
		}
		if failed > 0 {
			return 1
		}
	}
	return 0
}

// outageScenarios returns the names of the scenarios with Redis outages.
func outageScenarios(scs []*simulate.Scenario) []string {
	var names []string
	for _, sc := range scs {
		if len(sc.Redis.Outages) > 0 {
			names = append(names, sc.Name)
		}
	}
	return names
}

// compareAll runs every scenario with seeds seeds (its seed and the next
// ones), up to GOMAXPROCS runs at once (two per comparison) and at most
// maxClientsInFlight clients, scenarios with Redis outages on outageRedis
// unless cfg has a Redis, and returns the comparisons by scenario, then
// seed, in order: the output does not depend on which finished first. The
// first error in that order wins, and cancels the runs still going.
func compareAll(ctx context.Context, scs []*simulate.Scenario, seeds int, cfg simulate.Config, outageRedis *redis.Options) ([][]*simulate.Comparison, error) {
	type job struct {
		sc   *simulate.Scenario
		i, k int
	}
	out := make([][]*simulate.Comparison, len(scs))
	errs := make([][]error, len(scs))
	var jobs []job
	largest := 1
	for i, sc := range scs {
		if sc.Seed > math.MaxUint64-uint64(seeds-1) {
			return nil, fmt.Errorf("%s: seed %d with -seeds %d runs past the largest seed", sc.Name, sc.Seed, seeds)
		}
		out[i] = make([]*simulate.Comparison, seeds)
		errs[i] = make([]error, seeds)
		largest = max(largest, sc.Clients)
		for k := range seeds {
			s := *sc
			s.Seed = sc.Seed + uint64(k)
			jobs = append(jobs, job{&s, i, k})
		}
	}
	parallel := max(1, min(runtime.GOMAXPROCS(0)/2, maxClientsInFlight/largest, len(jobs)))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan job)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for j := range next {
				c := cfg
				if c.Redis == nil && len(j.sc.Redis.Outages) > 0 {
					c.Redis = outageRedis
				}
				if cfg.Progress != nil && seeds > 1 {
					seed := j.sc.Seed
					c.Progress = func(p simulate.Progress) {
						p.Scenario = fmt.Sprintf("%s seed %d", p.Scenario, seed)
						cfg.Progress(p)
					}
				}
				r, err := simulate.Compare(ctx, j.sc, c)
				if err != nil {
					cancel()
				}
				out[j.i][j.k], errs[j.i][j.k] = r, err
			}
		})
	}
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			errs[j.i][j.k] = err // not started
			continue
		}
		next <- j
	}
	close(next)
	wg.Wait()
	var first error
	for i, es := range errs {
		for k, err := range es {
			if err == nil {
				continue
			}
			if seeds > 1 {
				err = fmt.Errorf("seed %d: %w", scs[i].Seed+uint64(k), err)
			}
			// A cancellation that another run's failure caused is not
			// the news; that failure is.
			if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
				first = err
			}
		}
	}
	return out, first
}

// list prints the built-in scenarios: a name and the first sentence of
// its description a line.
func list(w io.Writer) error {
	scs, err := simulate.BuiltIn()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, sc := range scs {
		fmt.Fprintf(tw, "%s\t%s\n", sc.Name, firstSentence(sc.Description))
	}
	return tw.Flush()
}

// firstSentence returns s up to its first full stop that ends a sentence
// (one followed by a space or the end), on one line.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for i := 0; i < len(s); i++ {
		if (s[i] == '.' || s[i] == '!' || s[i] == '?') && (i+1 == len(s) || s[i+1] == ' ') {
			return s[:i+1]
		}
	}
	return s
}

// scenarios returns the scenarios to run: those -scenario names (built-in
// names or files), or every built-in; the built-ins at the laptop size
// unless -clients says otherwise, and all reseeded as -seed says.
func scenarios(o *options) ([]*simulate.Scenario, error) {
	type entry struct {
		sc      *simulate.Scenario
		builtin bool
	}
	var es []entry
	if len(o.files) == 0 {
		b, err := simulate.BuiltIn()
		if err != nil {
			return nil, err
		}
		for _, sc := range b {
			es = append(es, entry{sc, true})
		}
	}
	for _, f := range o.files {
		sc, builtin, err := resolve(f)
		if err != nil {
			return nil, err
		}
		es = append(es, entry{sc, builtin})
	}
	scs := make([]*simulate.Scenario, len(es))
	for i, e := range es {
		sc := e.sc
		if o.seed != 0 {
			sc.Seed = o.seed
		}
		size := o.clients
		if size == 0 && e.builtin {
			size = simulate.LaptopClients
		}
		if size != 0 {
			s, err := sc.Scale(size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.Name, err)
			}
			sc = s
		}
		scs[i] = sc
	}
	return scs, nil
}

// resolve loads what -scenario names: a regular file of that path, else a
// built-in of that name, else (when it looks like a path: it has a
// separator or ends in .json) the file's error, else an error that lists
// the built-ins.
func resolve(arg string) (sc *simulate.Scenario, builtin bool, err error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		sc, err := simulate.LoadScenario(arg)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", arg, err)
		}
		return sc, false, nil
	}
	if slices.Contains(simulate.BuiltInNames(), arg) {
		sc, err := simulate.BuiltInNamed(arg)
		return sc, true, err
	}
	if strings.ContainsRune(arg, '/') || strings.ContainsRune(arg, filepath.Separator) || strings.HasSuffix(arg, ".json") {
		_, err := simulate.LoadScenario(arg)
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, false, fmt.Errorf("%s: %w", arg, err)
	}
	return nil, false, fmt.Errorf("-scenario %q: no such file, and no built-in scenario of that name; the built-ins are: %s",
		truncate(arg, 64), strings.Join(simulate.BuiltInNames(), ", "))
}

// truncate shortens s to at most n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// bench runs the incident at 1,000,000 clients (or -clients), each mode
// on its own, and reports wall time per run and the process's peak RSS.
func bench(ctx context.Context, o *options, cfg simulate.Config, stdout, stderr io.Writer) int {
	scs, err := simulate.BuiltIn()
	if err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	var sc *simulate.Scenario
	for _, s := range scs {
		if s.Name == "incident" {
			sc = s
		}
	}
	n := 1_000_000
	if o.clients != 0 {
		n = o.clients
	}
	if sc, err = sc.Scale(n); err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	if o.seed != 0 {
		sc.Seed = o.seed
	}
	fmt.Fprintf(stdout, "benchmark: %s, %d clients, %d nodes, %v virtual, %s store\n", sc.Name, sc.Clients, sc.Nodes, sc.Duration.D(), storeName(cfg))
	start := time.Now()
	c, err := simulate.Compare(ctx, sc, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "stormsim:", err)
		return 2
	}
	wall := time.Since(start)
	for _, r := range []*simulate.Result{c.Unprotected, c.Protected} {
		fmt.Fprintf(stdout, "  %-11s peak %.0f req/s, %d origin calls, collapsed %v\n", r.Mode, r.PeakRPS, r.OriginCalls, r.Collapsed)
	}
	fmt.Fprintf(stdout, "  both runs (concurrent): %.1f s wall, peak RSS %s\n", wall.Seconds(), formatRSS(peakRSS()))
	return 0
}

func storeName(cfg simulate.Config) string {
	if cfg.Redis != nil {
		return "redis"
	}
	return "memory"
}

func formatRSS(b int64) string {
	if b <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// progressPrinter reports runs that take more than after of wall time
// (read from now): on a terminal as one line rewritten in place,
// otherwise a line every five seconds and one when a run ends.
func progressPrinter(w io.Writer, after time.Duration, now func() time.Time) func(simulate.Progress) {
	tty := isTerminal(w)
	var (
		mu      sync.Mutex // Compare reports from two goroutines
		started = map[string]time.Time{}
		last    time.Time
	)
	return func(p simulate.Progress) {
		mu.Lock()
		defer mu.Unlock()
		t := now()
		key := p.Scenario + "/" + string(p.Mode)
		if _, ok := started[key]; !ok {
			started[key] = t
		}
		done := p.Virtual >= p.Duration
		if t.Sub(started[key]) < after {
			return
		}
		if !done && t.Sub(last) < 5*time.Second && (!tty || t.Sub(last) < 500*time.Millisecond) {
			return
		}
		last = t
		pct := 100 * float64(p.Virtual) / float64(p.Duration)
		line := fmt.Sprintf("stormsim: %s %s: %s of %s virtual (%.0f%%), %d events, %.0fs wall",
			p.Scenario, p.Mode, p.Virtual.Truncate(time.Second), p.Duration, pct, p.Events, t.Sub(started[key]).Seconds())
		switch {
		case tty && done:
			fmt.Fprintf(w, "\r\033[K%s\n", line)
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		default:
			fmt.Fprintln(w, line)
		}
	}
}

// uniqueNames refuses two scenarios of one name: their files under -out
// would overwrite each other's.
func uniqueNames(scs []*simulate.Scenario) error {
	seen := map[string]bool{}
	for _, sc := range scs {
		if seen[sc.Name] {
			return fmt.Errorf("two scenarios are named %q: their report files would overwrite each other's (rename one)", sc.Name)
		}
		seen[sc.Name] = true
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// parseRedisURL parses -redis, insisting on an explicit host and port: a
// URL whose port came out empty (an unset shell variable, say) would
// otherwise fall back to localhost:6379, a Redis the run was not meant for.
func parseRedisURL(s string) (*redis.Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%q must name a host and a port, as in redis://127.0.0.1:6380/0", s)
	}
	return redis.ParseURL(s)
}
