// Command bench compares herdcap's budgets with golang.org/x/time/rate and
// go-redis/redis_rate in one run on one private redis-server, and prints a
// Markdown table with the targets herdcap must meet.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// config is the command line.
type config struct {
	rowDur   time.Duration
	accDur   time.Duration
	accConc  int
	accDem   float64
	accRate  float64
	accBurst int
	pool     int
	timeout  time.Duration
	rounds   int
	duels    int
	duelDur  time.Duration
	micro    time.Duration
	quick    bool
	json     bool
	run      *regexp.Regexp
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var c config
	var runExpr string
	fs.DurationVar(&c.rowDur, "d", 2*time.Second, "measured duration of each throughput row (after a warm-up of a quarter of it, at most 500ms)")
	fs.DurationVar(&c.accDur, "acc", 10*time.Second, "duration of each admission-accuracy row")
	fs.IntVar(&c.accConc, "acc-c", 8, "goroutines per node in the accuracy rows")
	fs.Float64Var(&c.accDem, "acc-demand", 10_000, "paced demand per node in the \"accuracy\" rows, decisions per second (the \"accuracy-unpaced\" rows ask as fast as the goroutines can, saturating the CPU)")
	fs.Float64Var(&c.accRate, "acc-rate", 1000, "accuracy limit: tokens per second (a whole number, for redis_rate)")
	fs.IntVar(&c.accBurst, "acc-burst", 100, "accuracy limit: burst")
	fs.IntVar(&c.pool, "pool", 64, "go-redis PoolSize of every Redis-backed subject, herdcap's and redis_rate's alike")
	fs.DurationVar(&c.timeout, "timeout", time.Second, "herdcap's per-call Redis time limit (fleet.Redis.Timeout); generous so that load on the machine does not trip it")
	fs.IntVar(&c.rounds, "rounds", 5, "interleaved testing.Benchmark rounds of the hot-key c=1 local vs x/time/rate comparison (the median is reported)")
	fs.IntVar(&c.duels, "duels", 5, "interleaved rounds of herdcap strict against redis_rate on every throughput workload (the median ratio is the target's figure; 0 skips them)")
	fs.DurationVar(&c.duelDur, "duel-d", time.Second, "measured duration of each duel round per contender")
	fs.DurationVar(&c.micro, "benchtime", time.Second, "testing.Benchmark time of each of those rounds")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: 200ms rows, 1s accuracy, one 200ms benchmark round (unless those flags are given too); the figures are not valid measurements")
	fs.BoolVar(&c.json, "json", false, "write the rows to stdout as a JSON array (fields name, backend, keys, concurrency, ops_per_sec, p50_ns, p99_ns, admitted, ideal, ...) and the Markdown report to stderr")
	fs.StringVar(&runExpr, "run", "", "only run rows whose \"name backend\" matches this regular expression (the targets then cover what ran)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["d"] {
			c.rowDur = 200 * time.Millisecond
		}
		if !set["acc"] {
			c.accDur = time.Second
		}
		if !set["rounds"] {
			c.rounds = 1
		}
		if !set["benchtime"] {
			c.micro = 200 * time.Millisecond
		}
		if !set["duels"] {
			c.duels = 1
		}
		if !set["duel-d"] {
			c.duelDur = 200 * time.Millisecond
		}
	}
	switch {
	case c.rowDur <= 0 || c.accDur <= 0 || c.micro <= 0 || c.duelDur <= 0:
		return c, fmt.Errorf("-d, -acc, -benchtime and -duel-d must be > 0")
	case c.duels < 0:
		return c, fmt.Errorf("-duels must be >= 0")
	case c.accDem <= 0:
		return c, fmt.Errorf("-acc-demand must be > 0")
	case c.accConc < 1 || c.pool < 1 || c.rounds < 1:
		return c, fmt.Errorf("-acc-c, -pool and -rounds must be >= 1")
	case c.timeout <= 0:
		return c, fmt.Errorf("-timeout must be > 0")
	case c.accRate < 1 || c.accRate != float64(int64(c.accRate)) || c.accBurst < 1:
		return c, fmt.Errorf("-acc-rate must be a whole number >= 1 and -acc-burst >= 1")
	}
	if runExpr != "" {
		re, err := regexp.Compile(runExpr)
		if err != nil {
			return c, fmt.Errorf("-run: %w", err)
		}
		c.run = re
	}
	return c, nil
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// The limits of the two kinds of rows.
var (
	// throughputLimit is never reached in a row (the burst alone outlasts
	// it), so every contender is measured on how fast it decides, not on
	// how fast it refuses. The rate is 1e6/s, not more: redis_rate keeps
	// time as float seconds since 2017, where a 1e-9 s emission interval
	// vanishes (tat + 1e-9 == tat), so at 1e9/s it never writes its key and
	// never limits, which would measure it doing less than its real work.
	throughputLimit = limitSpec{perSec: 1e6, burst: 1e9}
	// leasedNodeCount is the number of Leased nodes in the multi-node
	// accuracy row.
	leasedNodeCount = 4
)

// leaseAhead is Leased's default lead time; with the limit it gives the
// default max lease L = min(burst, ceil(rate × lead time)), the L of the
// overshoot bound in Leased's doc comment.
const leaseAhead = 100 * time.Millisecond

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	testing.Init()
	if err := flag.Set("test.benchtime", cfg.micro.String()); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}

	meta := collectMeta(cfg)
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	srv, err := startRedis(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer srv.stop()
	meta.redis = srv.version
	logf("redis-server %s on %s (private; killed on exit)", srv.version, srv.addr)

	e := &env{srv: srv, poolSize: cfg.pool, timeout: cfg.timeout}
	rep := &report{cfg: cfg, meta: meta}

	if cfg.run == nil || cfg.run.MatchString("micro "+bLocal) || cfg.run.MatchString("micro "+bBare) {
		logf("hot key, c=1: %d testing.Benchmark round(s) of %v each, x/time/rate and herdcap local interleaved", cfg.rounds, cfg.micro)
		m, err := runMicro(ctx, cfg.rounds, throughputLimit)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		rep.micro = &m
	}

	if cfg.duels > 0 && (cfg.run == nil || cfg.run.MatchString("duel "+bStrict)) {
		logf("strict against redis_rate: %d interleaved round(s) of %v per contender and workload", cfg.duels, cfg.duelDur)
		d, err := runDuels(ctx, e, srv, cfg.duels, cfg.duelDur, logf)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		rep.duels = d
	}

	rows := plan(cfg)
	for _, p := range rows {
		if ctx.Err() != nil {
			break
		}
		name := p.row.name() + " " + p.backend
		if cfg.run != nil && !cfg.run.MatchString(name) {
			continue
		}
		if p.redis {
			if err := srv.flush(ctx); err != nil {
				fmt.Fprintln(stderr, "bench: FLUSHALL:", err)
				return 1
			}
		}
		s, err := p.make(e, p.row.limit, p.row.keys, fmt.Sprintf("bench%d", len(rep.rows)))
		if err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", name, err)
			return 1
		}
		res := measure(ctx, p.row, s)
		s.close()
		rep.rows = append(rep.rows, res)
		logf("%-28s %-18s %12.0f decisions/s  p50 %-9s p99 %-9s %s", res.Name, res.Backend, res.OpsPerSec,
			fmtDur(res.P50ns), fmtDur(res.P99ns), admittedCell(res))
		if res.Errors > 0 {
			logf("    %d errors; first: %v", res.Errors, res.firstErr)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted; partial results follow")
	}
	rep.meta.loadEnd = loadAvg()

	md := stdout
	if cfg.json {
		md = stderr
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep.rows); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	rep.write(md)
	if ctx.Err() != nil {
		return 130
	}
	return 0
}

// planned is a row and the subject to run it on.
type planned struct {
	row     row
	backend string
	make    maker
	redis   bool
}

// plan lists the rows in run order. For each workload the contenders run
// back to back, so a change of load on the machine hits neighbours alike.
func plan(cfg config) []planned {
	type contender struct {
		backend string
		make    maker
		redis   bool
	}
	contenders := []contender{
		{bBare, bareMaker, false},
		{bLocal, localMaker, false},
		{bRedis, redisRateMaker, true},
		{bStrict, strictMaker, true},
		{bLeased, leasedMaker, true},
	}
	warm := min(cfg.rowDur/4, 500*time.Millisecond)
	var out []planned
	for _, keys := range []int{1, 10_000} {
		for _, conc := range []int{1, 64} {
			r := row{workload: "throughput", keys: keys, conc: conc, dur: cfg.rowDur, warmup: warm, limit: throughputLimit}
			for _, c := range contenders {
				out = append(out, planned{r, c.backend, c.make, c.redis})
			}
		}
	}
	acc := limitSpec{perSec: cfg.accRate, burst: cfg.accBurst}
	for _, paced := range []bool{true, false} {
		r := row{workload: "accuracy", keys: 1, conc: cfg.accConc, dur: cfg.accDur, limit: acc, accuracy: true}
		if paced {
			r.pace = cfg.accDem / float64(cfg.accConc)
		} else {
			r.workload = "accuracy-unpaced"
		}
		for _, c := range contenders {
			out = append(out, planned{r, c.backend, c.make, c.redis})
		}
		r.conc = cfg.accConc * leasedNodeCount
		r.slack = int64(leasedNodeCount * defaultMaxLease(acc))
		out = append(out, planned{r, bLeased4, leasedNodes(leasedNodeCount), true})
	}
	return out
}

// defaultMaxLease is Leased's default max lease size L under l, as its doc
// states it: the limit's tokens per lead time, capped at the burst.
func defaultMaxLease(l limitSpec) int {
	n := int(math.Ceil(l.perSec * leaseAhead.Seconds()))
	return max(1, min(l.burst, n))
}
