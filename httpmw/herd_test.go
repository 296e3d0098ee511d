package httpmw

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/virtualtime"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/retry"
)

// defaultSlotJitter is retry.Backoff's default SlotJitter: a client comes
// back less than this after its exact slot.
const defaultSlotJitter = 5 * time.Millisecond

// stripMillis drops headerRetryAfterMillis from responses, making a
// Transport that knows only Retry-After's whole seconds.
type stripMillis struct{ base http.RoundTripper }

func (s stripMillis) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := s.base.RoundTrip(r)
	if res != nil {
		res.Header.Del(headerRetryAfterMillis)
	}
	return res, err
}

// herdResult is what a herd run measured.
type herdResult struct {
	admitted    []time.Duration // since the first arrival, sorted
	arrivals    []time.Duration // every attempt, sorted
	returns     []time.Duration // retries only, sorted
	maxAttempts int
	statuses    map[int]int
}

// maxInWindow returns the most events in any window of length w.
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

// runHerd sends n clients at once, each through its own Transport, to a
// server admitting rate new sessions per second (burst at once), and
// records what happened.
func runHerd(t *testing.T, n int, rate float64, burst int, secondsOnly bool) herdResult {
	t.Helper()
	a, err := admission.New(limiter.PerSecond(rate, burst), admission.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	mw, err := Admit(a, AdmitConfig{})
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		start    time.Time
		res      = herdResult{statuses: map[int]int{}}
		attempts = map[string]int{}
	)
	since := func() time.Duration {
		if start.IsZero() {
			start = time.Now()
		}
		return time.Since(start)
	}
	admitted := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		res.admitted = append(res.admitted, since())
		mu.Unlock()
	})
	gate := mw(admitted)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := since()
		res.arrivals = append(res.arrivals, now)
		id := r.Header.Get(headerClient)
		if attempts[id] > 0 {
			res.returns = append(res.returns, now)
		}
		attempts[id]++
		mu.Unlock()
		gate.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	base := &http.Transport{MaxIdleConnsPerHost: n, MaxIdleConns: n}
	t.Cleanup(base.CloseIdleConnections)
	var rt http.RoundTripper = base
	if secondsOnly {
		rt = stripMillis{base}
	}

	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		tr, err := NewTransport(TransportConfig{Base: rt, ClientID: fmt.Sprintf("client-%04d", i)})
		require.NoError(t, err)
		wg.Go(func() {
			<-release
			r, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if !assert.NoError(t, err) {
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			_ = r.Body.Close()
			mu.Lock()
			res.statuses[r.StatusCode]++
			mu.Unlock()
		})
	}
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(res.admitted)
	slices.Sort(res.arrivals)
	slices.Sort(res.returns)
	for _, c := range attempts {
		res.maxAttempts = max(res.maxAttempts, c)
	}
	return res
}

// TestAdmissionHerdThroughHTTP replays a reconnect storm over real HTTP: 300
// clients at once against a gate of 100 new sessions per second (10 at
// once), each client a Transport honouring the refusal's hint.
//
// The exact millisecond hint (headerRetryAfterMillis) brings every client
// back at its own slot, so returns are as flat as the slots: every client
// is let in on its first retry, and no one-second window sees more than the
// rate, give or take scheduling (the tight figure, in virtual time, is
// TestAdmissionHerdVirtualTime's). With Retry-After's whole seconds
// alone, clients still get in (the slot grace covers the rounding) but
// come back bunched on second boundaries. The numbers are logged; run with
// -v to see them.
func TestAdmissionHerdThroughHTTP(t *testing.T) {
	const (
		herd  = 300
		rate  = 100.0
		burst = 10
	)
	for _, mode := range []struct {
		name        string
		secondsOnly bool
	}{{"millisecond hint", false}, {"whole seconds only", true}} {
		t.Run(mode.name, func(t *testing.T) {
			r := runHerd(t, herd, rate, burst, mode.secondsOnly)
			require.Equal(t, map[int]int{http.StatusOK: herd}, r.statuses, "every client gets in")
			require.Len(t, r.admitted, herd)
			// A booked slot is a promise: the retry comes at or after the
			// slot (the wait starts after the refusal was written) and
			// within the 10 s grace, so one retry suffices.
			assert.LessOrEqual(t, r.maxAttempts, 2, "a client was refused after waiting for its slot")
			// The slots end (herd-burst)/rate after the first admission;
			// load can only delay admissions, so this bound cannot flake.
			span := r.admitted[herd-1] - r.admitted[0]
			assert.GreaterOrEqual(t, span, time.Duration(float64(herd-burst)/rate*float64(time.Second))-50*time.Millisecond,
				"admitted faster than the slots allow")

			perSecond := maxInWindow(r.admitted, time.Second)
			admitted100 := maxInWindow(r.admitted, 100*time.Millisecond)
			returns100 := maxInWindow(r.returns, 100*time.Millisecond)
			t.Logf("%s: %d clients, gate %v/s burst %d: admitted over %v; most admitted in any 1 s window %d, "+
				"in any 100 ms window %d (the rate allows %d); %d retries, most in any 100 ms window %d; max attempts per client %d",
				mode.name, herd, rate, burst, span.Round(time.Millisecond), perSecond, admitted100, int(rate/10),
				len(r.returns), returns100, r.maxAttempts)
			if !mode.secondsOnly {
				// Admissions track the slots (rate per second) smeared by
				// the client's slot jitter (under 5 ms) and by scheduling
				// delay, which on the wall clock is the larger. Twice the
				// rate plus the burst leaves room for a loaded 2-core CI
				// machine under -race while still failing a gate that let
				// the herd (300) through in a second.
				assert.LessOrEqual(t, perSecond, int(2*rate)+burst)
				// At 100 ms the rate allows 10 returns. Whole seconds
				// alone bring about 100 back in one such window; with the
				// hint, a 300 ms scheduling stall's worth (30) plus the
				// burst still passes, and the bunching does not.
				assert.LessOrEqual(t, returns100, 50)
			}
		})
	}
}

// TestAdmissionHerdVirtualTime is the reconnect-storm target of issue 3
// through the shipped client: 10,000 clients disconnected at one instant,
// each its own Transport (default backoff shape, retry budget and bounds),
// over real loopback HTTP to Admit on a gate of 500 new sessions per second
// (50 at once). Time is virtual: the Admission reads a fake clock and the
// Transports sleep on a scheduler that runs one client at a time and sets
// the clock to its wake-up time, so the run is deterministic (the backoff
// is seeded) and takes seconds, not the storm's 20.
//
// The target: after the herd's own instant, every 1-second window of
// arrivals holds at most 1.1 × 500. The client honours the exact slot
// (headerRetryAfterMillis) with retry.Backoff.DelaySlot, so each return
// is at most 5 ms after its slot: a window holds at most the slots of
// 1.005 s (2.5 more than the rate) plus one the gate's jitter can move in,
// rate + 4, which is asserted as well. With the jitter meant for coarse
// hints (DelayHint: 10% of the slot, up to 1 s) the same storm's busiest
// window holds 527, and 526 to 548 over other seeds: inside 1.1 × rate,
// but only just.
func TestAdmissionHerdVirtualTime(t *testing.T) {
	const (
		herd  = 10_000
		rate  = 500
		burst = 50
	)
	clk := newManualClock()
	a := newAdmission(t, limiter.PerSecond(rate, burst), clk, admission.Config{})
	mw, err := Admit(a, AdmitConfig{})
	require.NoError(t, err)
	var (
		mu       sync.Mutex
		arrivals []time.Duration // virtual, since the storm; in order (one client at a time)
		attempts = map[string]int{}
	)
	gate := mw(&okHandler{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, clk.Now().Sub(t0))
		attempts[r.Header.Get(headerClient)]++
		mu.Unlock()
		gate.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	base := &http.Transport{} // one client at a time: one connection, reused
	t.Cleanup(base.CloseIdleConnections)
	bo := retry.Backoff{Rand: rand.New(rand.NewPCG(3, 4)).Float64} // the default shape, seeded

	sched := virtualtime.New(clk)
	statuses := map[int]int{}
	var failures atomic.Int32
	for i := range herd {
		tr, err := NewTransport(TransportConfig{Base: base, ClientID: fmt.Sprintf("client-%05d", i),
			Retry: retry.Policy{Backoff: bo}, Clock: sched.Clock()})
		require.NoError(t, err)
		sched.Go(t0, func() {
			res, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err != nil {
				failures.Add(1)
				return
			}
			discard(res.Body)
			statuses[res.StatusCode]++ // tasks run one at a time
		})
	}
	start := time.Now()
	end := sched.Run()
	t.Logf("%d clients through Admit in %v of virtual time, %v of wall time", herd, end.Sub(t0), time.Since(start).Round(time.Millisecond))
	require.Zero(t, failures.Load(), "no request failed")
	require.Equal(t, map[int]int{http.StatusOK: herd}, statuses, "every client gets in")

	mu.Lock()
	defer mu.Unlock()
	require.True(t, slices.IsSorted(arrivals))
	returns := arrivals[slices.IndexFunc(arrivals, func(d time.Duration) bool { return d > 0 }):]
	assert.Len(t, returns, herd-burst, "all but the burst came back, once")
	for id, n := range attempts {
		if n > 2 {
			t.Fatalf("%s: %d attempts: refused at its slot", id, n)
		}
	}
	busiest := maxInWindow(returns, time.Second)
	t.Logf("busiest 1 s window of returns: %d; target %d", busiest, rate*11/10)
	assert.LessOrEqual(t, busiest, rate*11/10)
	assert.LessOrEqual(t, busiest, rate+4, "each return at most 5 ms after its slot")
	// The slots end (herd-burst)/rate after the storm; the last client
	// comes back within one interval (the gate's jitter) plus 5 ms.
	last := returns[len(returns)-1]
	assert.GreaterOrEqual(t, last, time.Duration(herd-burst)*time.Second/rate)
	assert.LessOrEqual(t, last, time.Duration(herd-burst)*time.Second/rate+time.Second/rate+defaultSlotJitter+time.Millisecond)
}
