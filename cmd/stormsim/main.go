// Command stormsim replays cache-invalidation and reconnect storms in
// virtual time, unprotected and through herdcap, and compares the two.
//
// With no arguments it runs the built-in scenarios (rogue-invalidate,
// reconnect-storm, incident, config-change) at a laptop-friendly size and
// prints a comparison table. Flags:
//
//	-scenario FILE  run the scenario in FILE (repeatable) instead of the built-ins
//	-clients N      resize every scenario to N clients (rates scale with it)
//	-seed N         override the scenarios' seed
//	-json           print the results as JSON instead of the table
//	-out DIR        write per-second CSV, PNG and SVG charts and index.html under DIR
//	-check          exit 1 when a scenario's declared bounds fail
//	-redis URL      coordinate through Redis (redis://host:port/db) instead of memory
//	-bench          run the scale benchmark: the incident at 1,000,000 clients
//	-q              no progress on stderr
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
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

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

type options struct {
	files    fileList
	clients  int
	seed     uint64
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
	fs.Var(&o.files, "scenario", "run the scenario in `FILE` (repeatable) instead of the built-ins")
	fs.IntVar(&o.clients, "clients", 0, "resize every scenario to `N` clients, 1 to 10000000 (default: built-ins at 100000, files at their own size)")
	fs.Uint64Var(&o.seed, "seed", 0, "override the scenarios' seed (0: keep)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of the table")
	fs.StringVar(&o.out, "out", "", "write per-second CSV, PNG/SVG charts and index.html under `DIR`")
	fs.BoolVar(&o.check, "check", false, "exit 1 when a scenario's declared bounds fail")
	fs.StringVar(&o.redisURL, "redis", "", "coordinate through the Redis at `URL` (redis://host:port/db)")
	fs.BoolVar(&o.bench, "bench", false, "run the scale benchmark (the incident at 1,000,000 clients, 10 nodes, 30 virtual minutes) and report wall time and peak RSS")
	fs.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (scenario files go after -scenario)", fs.Arg(0))
	}
	clientsSet := false
	fs.Visit(func(f *flag.Flag) { clientsSet = clientsSet || f.Name == "clients" })
	if (clientsSet || o.clients != 0) && (o.clients < 1 || o.clients > simulate.MaxClients) {
		// Left out, it means each scenario's own size (the built-ins at
		// simulate.LaptopClients); given, it must be a size.
		return nil, fmt.Errorf("-clients must be between 1 and %d, got %d", simulate.MaxClients, o.clients)
	}
	if o.bench && len(o.files) > 0 {
		return nil, errors.New("-bench runs the built-in incident; it takes no -scenario")
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
	if o.out != "" {
		if err := uniqueNames(scs); err != nil {
			fmt.Fprintln(stderr, "stormsim: -out:", err)
			return 2
		}
	}
	var cs []*simulate.Comparison
	for _, sc := range scs {
		c, err := simulate.Compare(ctx, sc, cfg)
		if err != nil {
			fmt.Fprintln(stderr, "stormsim:", err)
			return 2
		}
		cs = append(cs, c)
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

// scenarios returns the scenarios to run: the files, or the built-ins at
// the laptop size, resized and reseeded as the flags say.
func scenarios(o *options) ([]*simulate.Scenario, error) {
	var scs []*simulate.Scenario
	size := o.clients
	if len(o.files) == 0 {
		b, err := simulate.BuiltIn()
		if err != nil {
			return nil, err
		}
		scs = b
		if size == 0 {
			size = simulate.LaptopClients
		}
	}
	for _, f := range o.files {
		sc, err := simulate.LoadScenario(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		scs = append(scs, sc)
	}
	for i, sc := range scs {
		if o.seed != 0 {
			sc.Seed = o.seed
		}
		if size != 0 {
			s, err := sc.Scale(size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.Name, err)
			}
			scs[i] = s
		}
	}
	return scs, nil
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
