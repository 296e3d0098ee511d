// Command rollout shows an "invalidate everything" rolling out across a
// fleet without becoming a storm: three herdcap nodes share one Redis (or,
// with -store memory, one in-process store), a thousand clients poll them
// over real HTTP on loopback, and one node tells every client to drop
// everything. The rollout reaches the clients cohort by cohort at the
// fleet-wide pace; the clients that drop their session come back through
// the admission gate; an abort from another node stops the rollout
// fleet-wide. It prints, second by second, the notices the clients applied
// and the sessions the nodes admitted, then checks the bounds.
//
//	go run ./examples/rollout                  # about 25 s
//	go run ./examples/rollout -store memory -clients 500
//
// With -store redis (the default when redis-server is on the PATH) the
// example starts its own private redis-server on a free loopback port, with
// persistence off, and kills it on exit; it never touches a Redis of yours.
// It stops early on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config is the example's configuration; see the flags in main.
type config struct {
	clients, nodes int
	store          string // "auto", "redis" or "memory"
	redisServer    string

	rate     float64       // rollout budget, clients per second fleet-wide
	cohorts  int           // rollout cohorts
	guardMin time.Duration // least duration of the guarded rollout
	advance  time.Duration // coordinator advance interval
	cache    time.Duration // coordinator Due cache TTL

	admitRate  float64 // new sessions per second fleet-wide
	admitBurst int

	poll       time.Duration // client poll interval
	startAfter time.Duration // from the start to the rollout
	abortAfter time.Duration // from the rollout to the abort
	tail       time.Duration // from the abort to the end
}

func defaultConfig() config {
	return config{
		clients: 1000, nodes: 3, store: "auto", redisServer: "redis-server",
		rate: 50, cohorts: 20, guardMin: 10 * time.Second, advance: time.Second, cache: 500 * time.Millisecond,
		admitRate: 250, admitBurst: 25,
		poll: 500 * time.Millisecond, startAfter: 6 * time.Second, abortAfter: 12 * time.Second, tail: 6 * time.Second,
	}
}

// validate names the first bad setting.
func (c config) validate() error {
	switch {
	case c.clients < 1 || c.clients > 100_000:
		return fmt.Errorf("-clients must be 1 to 100000, got %d", c.clients)
	case c.nodes < 1 || c.nodes > 16:
		return fmt.Errorf("-nodes must be 1 to 16, got %d", c.nodes)
	case c.store != "auto" && c.store != "redis" && c.store != "memory":
		return fmt.Errorf("-store must be auto, redis or memory, got %q", c.store)
	case !(c.rate > 0):
		return fmt.Errorf("-rate must be > 0, got %v", c.rate)
	case c.cohorts < 10:
		return fmt.Errorf("-cohorts must be at least 10 (the guard's minimum for invalidate-everything), got %d", c.cohorts)
	case c.guardMin < time.Second:
		return fmt.Errorf("-guard-min must be at least 1s, got %v", c.guardMin)
	case c.advance < time.Millisecond || c.cache < 0 || c.poll < time.Millisecond:
		return errors.New("-advance and -poll must be at least 1ms, -cache at least 0")
	case !(c.admitRate > 0) || c.admitBurst < 1:
		return fmt.Errorf("-admit must be > 0 and -admit-burst at least 1, got %v and %d", c.admitRate, c.admitBurst)
	case c.startAfter < 0 || c.abortAfter < 0 || c.tail < 0:
		return errors.New("-start-after, -abort-after and -tail must be >= 0")
	}
	return nil
}

func main() {
	c := defaultConfig()
	flag.IntVar(&c.clients, "clients", c.clients, "number of polling clients")
	flag.IntVar(&c.nodes, "nodes", c.nodes, "number of herdcap nodes")
	flag.StringVar(&c.store, "store", c.store, "shared store: redis (a private redis-server), memory, or auto (redis when redis-server is found)")
	flag.StringVar(&c.redisServer, "redis-server", c.redisServer, "redis-server binary for -store redis")
	flag.Float64Var(&c.rate, "rate", c.rate, "rollout budget: clients told per second, fleet-wide")
	flag.IntVar(&c.cohorts, "cohorts", c.cohorts, "rollout cohorts (at least 10)")
	flag.DurationVar(&c.guardMin, "guard-min", c.guardMin, "least duration of an invalidate-everything rollout")
	flag.DurationVar(&c.advance, "advance", c.advance, "how often each node advances the rollout")
	flag.DurationVar(&c.cache, "cache", c.cache, "how long a node answers from its cached rollout state")
	flag.Float64Var(&c.admitRate, "admit", c.admitRate, "new sessions admitted per second, fleet-wide")
	flag.IntVar(&c.admitBurst, "admit-burst", c.admitBurst, "new sessions admitted at once")
	flag.DurationVar(&c.poll, "poll", c.poll, "client poll interval")
	flag.DurationVar(&c.startAfter, "start-after", c.startAfter, "time before the rollout starts")
	flag.DurationVar(&c.abortAfter, "abort-after", c.abortAfter, "time from the start of the rollout to its abort")
	flag.DurationVar(&c.tail, "tail", c.tail, "time to keep running after the abort")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rollout:", err)
		os.Exit(1)
	}
	if !r.ok() {
		os.Exit(2)
	}
}

// run runs the example with c, printing to out, and returns what it
// measured.
func run(ctx context.Context, c config, out io.Writer) (*report, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	f, err := startFleet(ctx, c, out)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	return f.play(ctx)
}
