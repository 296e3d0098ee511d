package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sampleEvery is how often a worker times a decision: every 8th. Reading
// the monotonic clock twice costs about as much as a Local decision, so
// timing every one would measure the clock as much as the limiter; one in
// eight keeps that under a few ns per decision while still giving tens of
// thousands of samples per row. Every decision is counted for decisions/s.
const sampleEvery = 8

// row is one line of the table: a workload run on one subject.
type row struct {
	workload string // "throughput" or "accuracy"
	keys     int
	conc     int
	dur      time.Duration
	warmup   time.Duration
	limit    limitSpec
	accuracy bool    // report admitted against the ideal
	pace     float64 // decisions per second per worker; 0 = as fast as possible
	slack    int64   // tokens the stated bound allows above ideal (N·L), accuracy rows only
}

func (r row) name() string {
	return r.workload + "/" + keysLabel(r.keys) + "/c" + strconv.Itoa(r.conc)
}

func keysLabel(k int) string {
	if k == 1 {
		return "hot"
	}
	return strconv.Itoa(k) + "keys"
}

// result is a measured row, also the JSON object -json writes.
type result struct {
	Name        string  `json:"name"`
	Backend     string  `json:"backend"`
	Keys        int     `json:"keys"`
	Concurrency int     `json:"concurrency"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50ns       int64   `json:"p50_ns"`
	P99ns       int64   `json:"p99_ns"`
	Admitted    int64   `json:"admitted"`
	// Ideal is rate × seconds + burst for accuracy rows, null otherwise.
	Ideal *int64 `json:"ideal"`
	// Bound is Ideal plus the overshoot the backend's doc allows (N·L for
	// the multi-node leased row), null where no bound is stated.
	Bound       *int64  `json:"bound,omitempty"`
	Decisions   int64   `json:"decisions"`
	Errors      int64   `json:"errors"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	Seconds     float64 `json:"seconds"`

	firstErr error
}

// workerStats is what one worker hands back; its hist is preallocated.
type workerStats struct {
	h                   hist
	ops, admitted, errs int64
	firstErr            error
}

// keySet returns the row's keys: "hot", or k0..k(n-1).
func keySet(n int) []string {
	if n == 1 {
		return []string{hotKey}
	}
	ks := make([]string, n)
	for i := range ks {
		ks[i] = keyPrefix + strconv.Itoa(i)
	}
	return ks
}

// measure runs r on s: an unmeasured warm-up (if any), then the measured
// phase. ctx cancellation (SIGINT) cuts both short.
func measure(ctx context.Context, r row, s *subject) result {
	keys := keySet(r.keys)
	if r.warmup > 0 {
		runPhase(ctx, r, s, keys, r.warmup, nil)
	}
	var ms0, ms1 runtime.MemStats
	stats, elapsed := runPhase(ctx, r, s, keys, r.dur, func(before bool) {
		if before {
			runtime.ReadMemStats(&ms0)
		} else {
			runtime.ReadMemStats(&ms1)
		}
	})
	res := result{
		Name: r.name(), Backend: s.backend, Keys: r.keys, Concurrency: r.conc,
		Seconds: elapsed.Seconds(),
	}
	var h hist
	for i := range stats {
		w := &stats[i]
		h.merge(&w.h)
		res.Decisions += w.ops
		res.Admitted += w.admitted
		res.Errors += w.errs
		if res.firstErr == nil {
			res.firstErr = w.firstErr
		}
	}
	res.OpsPerSec = float64(res.Decisions) / elapsed.Seconds()
	res.P50ns, res.P99ns = int64(h.quantile(0.50)), int64(h.quantile(0.99))
	if res.Decisions > 0 {
		res.AllocsPerOp = float64(ms1.Mallocs-ms0.Mallocs) / float64(res.Decisions)
	}
	if r.accuracy {
		ideal := int64(math.Round(r.limit.perSec*elapsed.Seconds())) + int64(r.limit.burst)
		res.Ideal = &ideal
		if r.slack > 0 {
			b := ideal + r.slack
			res.Bound = &b
		}
	}
	return res
}

// runPhase runs r.conc workers for d and returns their stats and the
// elapsed time from release to the last worker's return. snap, if not nil,
// is called just before the release and just after the return.
func runPhase(ctx context.Context, r row, s *subject, keys []string, d time.Duration, snap func(before bool)) ([]workerStats, time.Duration) {
	stats := make([]workerStats, r.conc)
	var (
		stop  atomic.Bool
		wg    sync.WaitGroup
		ready sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range r.conc {
		wg.Add(1)
		ready.Add(1)
		f := s.worker(i)
		go func() {
			defer wg.Done()
			ready.Done()
			<-start
			work(&stop, f, keys, uint64(i)*0x9E3779B97F4A7C15+1, r.pace, &stats[i])
		}()
	}
	ready.Wait()
	if snap != nil {
		snap(true)
	}
	t0 := time.Now()
	close(start)
	tm := time.NewTimer(d)
	select {
	case <-tm.C:
	case <-ctx.Done():
		tm.Stop()
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0)
	if snap != nil {
		snap(false)
	}
	return stats, elapsed
}

// work is one worker's loop: pick a key (uniformly, for a key set), ask,
// count, and time every sampleEvery-th decision. With pace > 0 it keeps to
// pace decisions per second on average (catching up after a stall rather
// than dropping demand). Decisions use context.Background, as a caller
// without a deadline would: the bench's own cancellation goes through stop.
func work(stop *atomic.Bool, f op, keys []string, seed uint64, pace float64, w *workerStats) {
	ctx := context.Background()
	base := time.Now()
	var interval, next time.Duration
	if pace > 0 {
		interval = time.Duration(float64(time.Second) / pace)
	}
	n := uint64(len(keys))
	x := seed
	for i := 0; !stop.Load(); i++ {
		key := keys[0]
		if n > 1 {
			// xorshift64, then Lemire's multiply-shift onto [0, n).
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			key = keys[(x>>32)*n>>32]
		}
		var (
			ok  bool
			err error
		)
		if i%sampleEvery == 0 {
			t0 := time.Since(base)
			ok, err = f(ctx, key)
			w.h.record(time.Since(base) - t0)
		} else {
			ok, err = f(ctx, key)
		}
		if interval > 0 {
			next += interval
			if d := next - time.Since(base); d > 0 {
				time.Sleep(d)
			}
		}
		w.ops++
		switch {
		case err != nil:
			w.errs++
			if w.firstErr == nil {
				w.firstErr = fmt.Errorf("%s: %w", key, err)
			}
		case ok:
			w.admitted++
		}
	}
}
