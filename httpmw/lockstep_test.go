package httpmw

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

// TestNoLockstepPlainHTTPClients is issue 10's target for net/http: 1,000
// callers refused together by one shared bucket (100 per second, 10 at
// once, one key) retry with a plain client herdcap did not write, which
// sleeps exactly Retry-After (whole seconds) and sends the request again.
// In any 100 ms window after the refusal at most 1.1 × (rate × 0.1 s) +
// burst = 21 retries may arrive.
//
// Two mechanisms make it hold. The budget spreads the refusals: each is
// told its own turn, one refill interval (10 ms) after the previous one
// (limiter.Decision.RetryAfter), so the turns are 10 ms apart in absolute
// time, however long the refusals themselves took to decide. And the
// middleware holds each refusal for its wait's fraction of a second and
// then sends the whole seconds left, so that a client sleeping exactly
// Retry-After arrives at its turn instead of on the next whole second
// with everyone told the same second. (Without the hold, MaxHeld < 0, the
// same run fails: the callers told one second come back together, most
// are refused again, and some run out of their 20 attempts.)
//
// The herd is made tight: every first request waits at the server's door
// until the last has arrived, so all 1,000 reach the limiter at once.
// Time is real (the server's clock and the clients' sleeps), so the test
// takes the ten seconds the bucket needs to let 1,000 callers through.
//
// Tolerance: a retry arrives at its turn plus the time to deliver the
// held refusal, to wake the client from its sleep and to send the retry,
// never before its turn. Turns are 10 ms apart, so a window holds the
// turns of 100 ms (10, or 11 at the edges) plus those whose retries were
// delayed into it: the bound of 21 is met while those delays vary by less
// than about 100 ms, which a loaded 2-core machine under -race keeps to a
// few ms; refusals answered at once when the burst is spent late (a
// refused retry is told a turn at the end of the queue) do not bunch
// either.
func TestNoLockstepPlainHTTPClients(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the 10 s the bucket needs")
	}
	const (
		callers = 1000
		rate    = 100.0 // per second
		burst   = 10
	)
	b, err := limiter.NewLocal(limiter.PerSecond(rate, burst), limiter.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	mw, err := RateLimit(RateLimitConfig{}, Policy{Budget: b, Key: func(*http.Request) (string, error) { return "shared", nil }})
	require.NoError(t, err)
	limited := mw(&okHandler{})

	var (
		arrived atomic.Int64
		door    = make(chan struct{}) // opens when the last first request arrives
		mu      sync.Mutex
		opened  time.Time
		retries []time.Duration // arrival of every retry, since the door opened
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := arrived.Add(1); {
		case n < callers:
			select {
			case <-door:
			case <-time.After(60 * time.Second): // only a broken client gets here
				http.Error(w, "the herd never gathered", http.StatusInternalServerError)
				return
			}
		case n == callers:
			mu.Lock()
			opened = time.Now()
			mu.Unlock()
			close(door)
		default:
			now := time.Now()
			mu.Lock()
			retries = append(retries, now.Sub(opened))
			mu.Unlock()
		}
		limited.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: callers}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	// The plain client: GET; on 429, sleep exactly Retry-After seconds and
	// send again; at most 20 attempts.
	var (
		wg       sync.WaitGroup
		statuses sync.Map // status -> *atomic.Int64
		failures atomic.Int64
	)
	for range callers {
		wg.Go(func() {
			for range 20 {
				res, err := client.Get(srv.URL)
				if err != nil {
					failures.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusTooManyRequests {
					c, _ := statuses.LoadOrStore(res.StatusCode, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
					return
				}
				secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
				if err != nil {
					failures.Add(1)
					return
				}
				time.Sleep(time.Duration(secs) * time.Second)
			}
			failures.Add(1)
		})
	}
	wg.Wait()
	require.Zero(t, failures.Load(), "every caller gets through within 20 attempts")
	ok, _ := statuses.Load(http.StatusOK)
	require.NotNil(t, ok)
	assert.EqualValues(t, callers, ok.(*atomic.Int64).Load(), "every caller is served")

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(retries)
	busiest := maxInWindow(retries, 100*time.Millisecond)
	bound := int(1.1*rate*0.1) + burst
	t.Logf("%d callers refused together by a bucket of %v/s, burst %d: %d retries over %v; busiest 100 ms window %d (bound %d)",
		callers, rate, burst, len(retries), retries[len(retries)-1].Round(time.Millisecond), busiest, bound)
	assert.LessOrEqual(t, busiest, bound)
	// The turns run out at (callers - burst) / rate: retries come back
	// spread over that, not early.
	assert.GreaterOrEqual(t, retries[len(retries)-1], time.Duration(float64(callers-burst-5)/rate*float64(time.Second)))
}
