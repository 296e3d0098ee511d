package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// eventKind is what happened.
type eventKind uint8

const (
	evNotice  eventKind = iota // a client applied a notice
	evNew                      // a node admitted a new session
	evResumed                  // a node admitted a session on its resume token
	evRefused                  // a node refused a new session
	evFailed                   // a node's admission failed
)

type event struct {
	at   time.Duration // since the start
	kind eventKind
	node int
}

// mark names a moment of the timeline.
type mark uint8

const (
	markStart mark = iota
	markAbort
)

// recorder collects what the clients and nodes saw. It is safe for
// concurrent use.
type recorder struct {
	start time.Time

	mu            sync.Mutex
	events        []event
	told          map[string]int // notices applied per client
	rollout       string
	cohorts       int
	startAt       time.Duration // -1 until the rollout starts
	abortAt       time.Duration // -1 until it is aborted
	abortReleased int
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), told: map[string]int{}, startAt: -1, abortAt: -1}
}

func (r *recorder) since() time.Duration { return time.Since(r.start) }

func (r *recorder) setRollout(id string, cohorts int) {
	r.mu.Lock()
	r.rollout, r.cohorts = id, cohorts
	r.mu.Unlock()
}

func (r *recorder) mark(m mark) {
	at := r.since()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m {
	case markStart:
		r.startAt = at
	case markAbort:
		r.abortAt = at
	}
}

func (r *recorder) setAbortReleased(n int) {
	r.mu.Lock()
	r.abortReleased = n
	r.mu.Unlock()
}

// notice records a notice a client applied, served by node.
func (r *recorder) notice(client string, node int, _ invalidate.Notice) {
	at := r.since()
	r.mu.Lock()
	r.events = append(r.events, event{at: at, kind: evNotice, node: node})
	r.told[client]++
	r.mu.Unlock()
}

// admitted records an admission decision, seen from the response: 503 is
// a refusal, a success on a presented ticket a rejoin (the example's
// clients present only tickets they were given, all valid for 10 minutes),
// another success a new session, anything else a failure.
func (r *recorder) admitted(status int, ticket bool) {
	kind := evFailed
	switch {
	case status == http.StatusServiceUnavailable:
		kind = evRefused
	case status == http.StatusOK && ticket:
		kind = evResumed
	case status == http.StatusOK:
		kind = evNew
	}
	at := r.since()
	r.mu.Lock()
	r.events = append(r.events, event{at: at, kind: kind})
	r.mu.Unlock()
}

// counts returns the events of each kind in [from, to).
func (r *recorder) counts(from, to time.Duration) (n [evFailed + 1]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.at >= from && e.at < to {
			n[e.kind]++
		}
	}
	return n
}

// times returns the times of the events of kind, sorted.
func (r *recorder) times(kind eventKind) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, e := range r.events {
		if e.kind == kind {
			out = append(out, e.at)
		}
	}
	slices.Sort(out)
	return out
}

// maxInWindow returns the most of ts (sorted) in any window of length w.
func maxInWindow(ts []time.Duration, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i]-ts[j] >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// table prints one row per second, and the notes of the timeline between
// them.
type table struct {
	out   io.Writer
	rec   *recorder
	coord *invalidate.Coordinator
	id    string

	mu   sync.Mutex // serialises output
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newTable(out io.Writer, rec *recorder, coord *invalidate.Coordinator, id string) *table {
	t := &table{out: out, rec: rec, coord: coord, id: id, done: make(chan struct{})}
	fmt.Fprintf(out, "%5s  %8s  %12s  %8s  %8s  %s\n", "t", "notices", "new sessions", "resumed", "refused", "released cohorts")
	t.wg.Go(t.loop)
	return t
}

func (t *table) loop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for s := 1; ; s++ {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		n := t.rec.counts(time.Duration(s-1)*time.Second, time.Duration(s)*time.Second)
		released := ""
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if st, err := t.coord.Status(ctx, t.id); err == nil {
			released = fmt.Sprintf("%d (%s)", st.Released, st.Phase)
		} else if !errors.Is(err, invalidate.ErrUnknownRollout) {
			released = "?"
		}
		cancel()
		t.mu.Lock()
		fmt.Fprintf(t.out, "%4ds  %8d  %12d  %8d  %8d  %s\n", s, n[evNotice], n[evNew], n[evResumed], n[evRefused]+n[evFailed], released)
		t.mu.Unlock()
	}
}

// note prints a line of the timeline.
func (t *table) note(s string) {
	t.mu.Lock()
	fmt.Fprintf(t.out, "  ---  at %v  %s\n", t.rec.since().Round(time.Millisecond), s)
	t.mu.Unlock()
}

// stop ends the table; it may be called more than once.
func (t *table) stop() {
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
}

// report is what the example measured, and the bounds it checks.
type report struct {
	Store            string
	Clients, Cohorts int

	// The rollout's pace: Rate clients per second, Wave the most one
	// advance releases (the larger of the biggest cohort and Rate × the
	// advance interval).
	Rate float64
	Wave int
	// MaxNoticesPerSecond is the most notices the clients applied in any
	// one-second window; Bound is Rate + Wave, and LagAllowance the
	// notices a delivery delay of poll + cache interval can add to a
	// window (see bound).
	MaxNoticesPerSecond int
	Bound, LagAllowance float64

	// Admission: the most new sessions admitted in any one-second window,
	// against AdmitRate + AdmitBurst.
	MaxNewPerSecond int
	AdmitRate       float64
	AdmitBurst      int
	Refused         int

	// The abort: cohorts released when it was called and in the end, the
	// clients in the released cohorts, those told, those told although
	// in a cohort never released, those told twice, and the last notice
	// after the abort (relative to it; negative if none came after).
	Phase                    invalidate.Phase
	ReleasedAtAbort          int
	ReleasedFinal            int
	InReleased, Told         int
	ToldOutside, ToldTwice   int
	NoticesAfterAbort        int
	LastNoticeAfterAbort     time.Duration
	AbortEffectBound         time.Duration // advance + cache + poll
	abortAt, startAt         time.Duration
	advance, cache, pollTime time.Duration
}

// report computes the report from what was recorded and the rollout's
// final status st.
func (r *recorder) report(c config, st invalidate.Status, store string) *report {
	rep := &report{Store: store, Clients: c.clients, Cohorts: c.cohorts, Rate: c.rate,
		AdmitRate: c.admitRate, AdmitBurst: c.admitBurst, Phase: st.Phase, ReleasedFinal: st.Released,
		advance: c.advance, cache: c.cache, pollTime: c.poll}
	sizes := make([]int, c.cohorts)
	r.mu.Lock()
	id, told := r.rollout, r.told
	rep.ReleasedAtAbort, rep.abortAt, rep.startAt = r.abortReleased, r.abortAt, r.startAt
	for i := range c.clients {
		client := fmt.Sprintf("client-%04d", i)
		cohort := limiter.Cohort(id, client, c.cohorts)
		sizes[cohort]++
		inReleased := cohort < st.Released
		if inReleased {
			rep.InReleased++
		}
		switch n := told[client]; {
		case n == 0:
		case !inReleased:
			rep.ToldOutside++
		case n > 1:
			rep.ToldTwice++
		default:
			rep.Told++
		}
	}
	r.mu.Unlock()
	rep.Wave = max(slices.Max(sizes), int(math.Ceil(c.rate*c.advance.Seconds())))
	rep.Bound = c.rate + float64(rep.Wave)
	rep.LagAllowance = c.rate * (c.poll + c.cache).Seconds()
	notices := r.times(evNotice)
	rep.MaxNoticesPerSecond = maxInWindow(notices, time.Second)
	rep.MaxNewPerSecond = maxInWindow(r.times(evNew), time.Second)
	rep.Refused = len(r.times(evRefused)) + len(r.times(evFailed))
	rep.LastNoticeAfterAbort = -1
	for _, at := range notices {
		if rep.abortAt >= 0 && at > rep.abortAt {
			rep.NoticesAfterAbort++
			rep.LastNoticeAfterAbort = at - rep.abortAt
		}
	}
	rep.AbortEffectBound = c.advance + c.cache + c.poll
	return rep
}

// ok reports whether every bound held.
func (r *report) ok() bool {
	return float64(r.MaxNoticesPerSecond) <= r.Bound+r.LagAllowance &&
		r.ToldOutside == 0 && r.ToldTwice == 0 && r.Phase == invalidate.Aborted &&
		r.ReleasedAtAbort == r.ReleasedFinal && r.LastNoticeAfterAbort <= r.AbortEffectBound
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// print writes the summary.
func (r *report) print(out io.Writer) {
	fmt.Fprintf(out, "\nstore: %s\n", r.Store)
	fmt.Fprintf(out, "rollout budget %v clients/s, one wave = %d clients (biggest cohort, or rate × advance interval)\n", r.Rate, r.Wave)
	fmt.Fprintf(out, "  most notices in any 1 s window: %d; budget + one wave = %.0f (+ %.0f for delivery lag: poll %v + cache %v): held %s\n",
		r.MaxNoticesPerSecond, r.Bound, r.LagAllowance, r.pollTime, r.cache,
		yes(float64(r.MaxNoticesPerSecond) <= r.Bound+r.LagAllowance))
	fmt.Fprintf(out, "  most new sessions in any 1 s window: %d (admission %v/s + %d at once); refusals: %d\n",
		r.MaxNewPerSecond, r.AdmitRate, r.AdmitBurst, r.Refused)
	fmt.Fprintf(out, "abort: %s with %d of %d cohorts released (%d at the abort call: no node released one after it: %s)\n",
		r.Phase, r.ReleasedFinal, r.Cohorts, r.ReleasedAtAbort, yes(r.ReleasedAtAbort == r.ReleasedFinal))
	fmt.Fprintf(out, "  clients in released cohorts: %d, told once: %d, told twice: %d, told outside them: %d: held %s\n",
		r.InReleased, r.Told, r.ToldTwice, r.ToldOutside, yes(r.ToldOutside == 0 && r.ToldTwice == 0))
	if r.NoticesAfterAbort > 0 {
		fmt.Fprintf(out, "  %d notices after the abort (clients of released cohorts polling), the last %v after it (bound: advance + cache + poll = %v): held %s\n",
			r.NoticesAfterAbort, r.LastNoticeAfterAbort.Round(time.Millisecond), r.AbortEffectBound, yes(r.LastNoticeAfterAbort <= r.AbortEffectBound))
	} else {
		fmt.Fprintf(out, "  no notice after the abort\n")
	}
	fmt.Fprintf(out, "  %d of %d clients were never told: the rollout stopped fleet-wide\n", r.Clients-r.Told-r.ToldTwice-r.ToldOutside, r.Clients)
}
