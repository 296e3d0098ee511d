package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	lfleet "github.com/herdcap/herdcap/limiter/fleet"
)

// redisTimeout is the timeout of one Redis call: generous, since the
// example may run on a loaded machine (its test runs under -race).
const redisTimeout = 500 * time.Millisecond

// node is one herdcap server: a coordinator and an admission gate over the
// shared store, behind an HTTP server on a loopback port.
type node struct {
	name  string
	coord *invalidate.Coordinator
	url   string
	srv   *http.Server
}

// fleet is the example's world: the nodes, the clients and what they saw.
type fleet struct {
	c     config
	out   io.Writer
	store string // what the nodes share, for the report
	nodes []*node
	rec   *recorder

	base    *http.Transport // the clients' shared connection pool
	closers []func()        // run in reverse by stop
	bg      sync.WaitGroup  // servers and coordinator loops
	cancel  context.CancelFunc
}

// startFleet starts the store, the nodes and their coordinator loops.
func startFleet(ctx context.Context, c config, out io.Writer) (f *fleet, err error) {
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f = &fleet{c: c, out: out, rec: newRecorder(), cancel: cancel}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	limit := limiter.PerSecond(c.admitRate, c.admitBurst)
	admitCfg := admission.Config{TicketKeys: [][]byte{key}, TicketTTL: 10 * time.Minute, Salt: "rollout-example"}

	// One store per node, as separate processes would hold them: Redis
	// clients of one server, or the one in-process store they share.
	stores := make([]invalidate.Store, c.nodes)
	gates := make([]*admission.Gate, c.nodes)
	useRedis := c.store == "redis"
	if c.store == "auto" {
		useRedis = redisAvailable(c.redisServer)
		if !useRedis {
			fmt.Fprintf(out, "redis-server not found: using the in-process store (-store memory)\n")
		}
	}
	if useRedis {
		addr, stopRedis, err := startRedis(ctx, c.redisServer)
		if err != nil {
			return f, err
		}
		f.closers = append(f.closers, stopRedis)
		f.store = "redis " + addr + " (private, persistence off)"
		for i := range stores {
			rc := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, PoolSize: 64})
			f.closers = append(f.closers, func() { _ = rc.Close() })
			if stores[i], err = invalidate.NewRedisStore(lfleet.Redis{Client: rc, Name: "rollout-example",
				Timeout: redisTimeout}); err != nil {
				return f, err
			}
			a, err := admission.NewShared(lfleet.Redis{Client: rc, Timeout: redisTimeout, Node: fmt.Sprint("node-", i)}, limit,
				admission.SharedConfig{Config: admitCfg})
			if err != nil {
				return f, err
			}
			f.closers = append(f.closers, func() { _ = a.Close() })
			gates[i] = a
		}
	} else {
		f.store = "memory (one in-process store shared by the nodes)"
		mem := invalidate.NewMemoryStore()
		a, err := admission.New(limit, admitCfg)
		if err != nil {
			return f, err
		}
		f.closers = append(f.closers, func() { _ = a.Close() })
		for i := range stores {
			stores[i] = mem
			gates[i] = a
		}
	}

	cacheTTL := c.cache
	if cacheTTL == 0 {
		cacheTTL = -1 // -cache 0: every request reads the store
	}
	for i := range c.nodes {
		n := &node{name: fmt.Sprint("node-", i)}
		n.coord, err = invalidate.NewCoordinator(stores[i], invalidate.Config{Node: n.name,
			AdvanceInterval: c.advance, CacheTTL: cacheTTL,
			Guard: invalidate.Guard{MinDuration: c.guardMin, MaxRate: c.rate}})
		if err != nil {
			return f, err
		}
		h, err := nodeHandler(n.coord, gates[i], f.rec)
		if err != nil {
			return f, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return f, err
		}
		n.url = "http://" + ln.Addr().String()
		n.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
		f.nodes = append(f.nodes, n)
		f.bg.Go(func() { _ = n.srv.Serve(ln) })
		f.bg.Go(func() { _ = n.coord.Run(bgCtx) })
	}
	f.base = &http.Transport{MaxIdleConns: 2 * c.clients * c.nodes, MaxIdleConnsPerHost: 2 * c.clients,
		IdleConnTimeout: time.Minute}
	return f, nil
}

// nodeHandler is a node's HTTP stack: admission, then invalidation, then
// the application (a tiny document), with every admission decision
// recorded in rec.
func nodeHandler(coord *invalidate.Coordinator, gate *admission.Gate, rec *recorder) (http.Handler, error) {
	adm, err := httpmw.Admit(gate, httpmw.AdmitConfig{})
	if err != nil {
		return nil, err
	}
	inv, err := httpmw.Invalidate(coord, httpmw.InvalidateConfig{})
	if err != nil {
		return nil, err
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "catalog page\n")
	})
	h := adm(inv(app))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		rec.admitted(sw.status, r.Header.Get("Herdcap-Ticket") != "")
	}), nil
}

// statusWriter notes the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader notes the status and writes it.
func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// stop shuts everything down, in reverse order of starting.
func (f *fleet) stop() {
	for _, n := range f.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.srv.Shutdown(ctx)
		cancel()
	}
	f.cancel()
	f.bg.Wait()
	if f.base != nil {
		f.base.CloseIdleConnections()
	}
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
}

// play runs the timeline: clients connect; a rollout of ScopeAll starts on
// the first node; the last node aborts it; the example reports.
func (f *fleet) play(ctx context.Context) (*report, error) {
	c := f.c
	fmt.Fprintf(f.out, "herdcap rollout example: %d nodes, %d clients polling every %v, store: %s\n",
		c.nodes, c.clients, c.poll, f.store)
	fmt.Fprintf(f.out, "admission: %v new sessions/s fleet-wide (%d at once); rollout: %v clients/s in %d cohorts, advance %v, cache %v\n\n",
		c.admitRate, c.admitBurst, c.rate, c.cohorts, c.advance, c.cache)

	runCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	clientsDone := f.startClients(runCtx)
	defer clientsDone()

	first, last := f.nodes[0], f.nodes[len(f.nodes)-1]
	id := "everything-" + time.Now().UTC().Format("150405.000")
	f.rec.setRollout(id, c.cohorts)
	table := newTable(f.out, f.rec, first.coord, id)
	defer table.stop()

	steps := []struct {
		after time.Duration
		do    func() error
	}{
		{c.startAfter, func() error {
			st, err := first.coord.Start(ctx, invalidate.Rollout{ID: id, Scope: invalidate.ScopeAll, Cohorts: c.cohorts,
				Rate: c.rate, Clients: c.clients, By: first.name})
			if err != nil {
				return fmt.Errorf("starting the rollout: %w", err)
			}
			f.rec.mark(markStart)
			table.note(fmt.Sprintf("%s: invalidate everything (%s): guarded=%v, one cohort every %v, at least %v",
				first.name, id, st.Guarded, st.CohortInterval.Round(time.Millisecond), st.MinDuration))
			return nil
		}},
		{c.abortAfter, func() error {
			// Abort right after a wave goes out, as an operator watching
			// it would: that wave's clients are still told (they may
			// already have been), no later one is.
			f.awaitRelease(ctx, last.coord, id)
			if err := last.coord.Abort(ctx, id, invalidate.By{}); err != nil {
				return fmt.Errorf("aborting the rollout: %w", err)
			}
			f.rec.mark(markAbort)
			st, err := last.coord.Status(ctx, id)
			if err != nil {
				return err
			}
			f.rec.setAbortReleased(st.Released)
			table.note(fmt.Sprintf("%s: abort (released %d of %d cohorts)", last.name, st.Released, c.cohorts))
			return nil
		}},
		{c.tail, func() error { return nil }},
	}
	for _, s := range steps {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.after):
		}
		if err := s.do(); err != nil {
			return nil, err
		}
	}
	stopClients()
	clientsDone()
	table.stop()
	st, err := first.coord.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	r := f.rec.report(c, st, f.store)
	r.print(f.out)
	return r, nil
}

// awaitRelease waits, for at most two seconds, until a cohort of rollout
// id is released.
func (f *fleet) awaitRelease(ctx context.Context, coord *invalidate.Coordinator, id string) {
	st, err := coord.Status(ctx, id)
	if err != nil || st.Phase != invalidate.Running {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		now, err := coord.Status(ctx, id)
		if err != nil || now.Released != st.Released || now.Phase != invalidate.Running {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errNoRedis is returned by startRedis when no redis-server can be run.
var errNoRedis = errors.New("redis-server not found (install it, or use -store memory)")
