package warmup_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/warmup"
)

// originServer is the tests' origin: an HTTP server on loopback that
// answers GET /k/<key> with a value, at most capacity requests at once
// (more get 503, as an overloaded origin would), and counts every request
// it served, per key, in order.
type originServer struct {
	srv      *httptest.Server
	capacity chan struct{}
	client   *http.Client

	mu     sync.Mutex
	counts map[string]int
	order  []string
	at     []time.Time
	over   atomic.Int64 // requests refused for capacity
}

func newOrigin(t *testing.T, capacity int) *originServer {
	t.Helper()
	o := &originServer{capacity: make(chan struct{}, capacity), counts: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case o.capacity <- struct{}{}:
			defer func() { <-o.capacity }()
		default:
			o.over.Add(1)
			http.Error(w, "over capacity", http.StatusServiceUnavailable)
			return
		}
		key := strings.TrimPrefix(r.URL.Path, "/k/")
		o.mu.Lock()
		o.counts[key]++
		o.order = append(o.order, key)
		o.at = append(o.at, time.Now())
		o.mu.Unlock()
		_, _ = io.WriteString(w, "value of "+key)
	}))
	o.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(func() {
		o.client.CloseIdleConnections()
		o.srv.Close()
	})
	return o
}

// fetch is a Warm.Fetch over HTTP.
func (o *originServer) fetch(ctx context.Context, key string) (any, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.srv.URL+"/k/"+key, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	readAt := time.Now()
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, time.Time{}, fmt.Errorf("origin: %s", resp.Status)
	}
	return string(b), readAt, nil
}

func (o *originServer) snapshot() (map[string]int, []string, []time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := make(map[string]int, len(o.counts))
	for k, v := range o.counts {
		c[k] = v
	}
	return c, append([]string(nil), o.order...), append([]time.Time(nil), o.at...)
}

// cache is the tests' cache: an add-only map.
type cache struct {
	mu sync.Mutex
	m  map[string]any
}

func newCache() *cache { return &cache{m: map[string]any{}} }

func (c *cache) store(_ context.Context, key string, v any, _ time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		c.m[key] = v
	}
	return nil
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// items returns n items with distinct keys and weights n, n-1, ..., 1.
func items(n int) []warmup.Item {
	out := make([]warmup.Item, n)
	for i := range out {
		out[i] = warmup.Item{Key: fmt.Sprintf("key-%07d", i), Weight: float64(n - i)}
	}
	return out
}

// storeKind makes the stores of one fleet: memory (shared in process),
// a private redis-server, the 3-master cluster.
type storeKind struct {
	name string
	make func(t *testing.T, ns string) func() warmup.Store
}

func storeKinds() []storeKind {
	return []storeKind{
		{"memory", func(t *testing.T, _ string) func() warmup.Store {
			s := warmup.NewMemoryStore()
			return func() warmup.Store { return s }
		}},
		{"redis", func(t *testing.T, ns string) func() warmup.Store {
			c := srv.Client(t)
			ns = uniqueNS(ns)
			return func() warmup.Store { return redisStore(t, c, ns) }
		}},
		{"cluster", func(t *testing.T, ns string) func() warmup.Store {
			c := cluster.Client(t)
			ns = uniqueNS(ns)
			return func() warmup.Store { return redisStore(t, c, ns) }
		}},
	}
}

// nsSeq makes namespaces unique across -count runs on the shared servers.
var nsSeq atomic.Int64

// uniqueNS returns ns with a suffix no other test run of this process uses.
func uniqueNS(ns string) string { return fmt.Sprintf("%s-%d", ns, nsSeq.Add(1)) }

func redisStore(t *testing.T, c redis.UniversalClient, ns string) warmup.Store {
	t.Helper()
	s, err := warmup.NewRedisStore(fleet.Redis{Client: c, Name: ns, Timeout: time.Second})
	require.NoError(t, err)
	return s
}

// localBudget returns a Local budget of rate keys/s with burst.
func localBudget(t *testing.T, rate float64, burst int) limiter.Budget {
	t.Helper()
	b, err := limiter.NewLocal(limiter.PerSecond(rate, burst), limiter.Config{})
	require.NoError(t, err)
	return b
}

// runFleet runs each Warmer's Run on its own goroutine until the returned
// stop is called (or the test ends); stop waits for them.
func runFleet(t *testing.T, ws ...*warmup.Warmer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Run(ctx)
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// waitPhase polls w's Status of id until it reaches phase, failing after
// within (a bound each test justifies).
func waitPhase(t *testing.T, w *warmup.Warmer, id string, phase warmup.Phase, within time.Duration) warmup.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := w.Status(context.Background(), id)
		if err == nil && st.Phase == phase {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm %q not %v within %v: %+v, %v", id, phase, within, st, err)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

// redistestStart starts a private redis-server for one test (it may be
// restarted).
func redistestStart(t *testing.T) *redistest.Server { return redistest.Start(t) }

func fleetRedisNoClient() fleet.Redis { return fleet.Redis{} }
