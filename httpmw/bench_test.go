package httpmw

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcap/herdcap/limiter"
)

// benchWriter is a ResponseWriter that reuses its header map, as close to
// free as a writer gets, so that the benchmark measures the middleware.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) reset() {
	clear(w.h)
	w.status = 0
}

type stoppedClock struct{}

func (stoppedClock) Now() time.Time { return t0 }

func (stoppedClock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

// textPlain is the bare handler's Content-Type value, shared by its
// responses (the benchmark's own business: no middleware value is).
var textPlain = []string{"text/plain; charset=utf-8"}

// bare is the handler every variant wraps: it sets one header, as real
// handlers do (so that the header map already holds its storage), and
// writes nothing.
var bare = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = textPlain
})

// BenchmarkRateLimit compares the bare handler with the same handler behind
// RateLimit over a real Local budget; the difference is the middleware's
// overhead. "allowed" never runs out of tokens; "denied" always has (its
// waits are whole seconds: nothing is held). "allowed-limit" gives every
// request its own limit (Policy.Limit), the same each time: what a
// per-plan limit costs over "allowed". "allowed-2-policies" passes two
// policies on two budgets; "allowed-ipv6" keys an IPv6 client by its /64.
//
//	go test -run '^$' -bench BenchmarkRateLimit -benchmem ./httpmw/
func BenchmarkRateLimit(b *testing.B) {
	never, err := limiter.NewLocal(limiter.PerSecond(1e12, 1<<40), limiter.Config{})
	if err != nil {
		b.Fatal(err)
	}
	// A stopped clock: the one token, once spent, never comes back, and
	// each denial says "retry after 1 s".
	always, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: stoppedClock{}})
	if err != nil {
		b.Fatal(err)
	}
	never2, err := limiter.NewLocal(limiter.PerSecond(1e12, 1<<40), limiter.Config{})
	if err != nil {
		b.Fatal(err)
	}
	wrap := func(cfg RateLimitConfig, p ...Policy) http.Handler {
		mw, err := RateLimit(cfg, p...)
		if err != nil {
			b.Fatal(err)
		}
		return mw(bare)
	}
	plan := limiter.PerSecond(1e12, 1<<40)
	perPlan := func(*http.Request) (limiter.Limit, error) { return plan, nil }
	variants := []struct {
		name   string
		h      http.Handler
		remote string
		header http.Header
		status int
	}{
		{"bare", bare, "10.0.0.1:5555", nil, 0},
		{"allowed", wrap(RateLimitConfig{}, Policy{Budget: never}), "10.0.0.1:5555", nil, 0},
		{"allowed-limit", wrap(RateLimitConfig{}, Policy{Budget: never, Limit: perPlan}), "10.0.0.1:5555", nil, 0},
		{"allowed-2-policies", wrap(RateLimitConfig{}, Policy{Name: "a", Budget: never}, Policy{Name: "b", Budget: never2}),
			"10.0.0.1:5555", nil, 0},
		{"allowed-ipv6", wrap(RateLimitConfig{}, Policy{Budget: never}), "[2001:db8::7]:5555", nil, 0},
		{"allowed-trusted-xff", wrap(RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"10.0.0.0/8"}}}, Policy{Budget: never}),
			"10.0.0.1:5555", http.Header{"X-Forwarded-For": {"198.51.100.1, 10.1.1.1"}}, 0},
		// Nothing held (MaxHeld < 0): the denial tail soon tells waits
		// with fractions of a second, which the default would hold.
		{"denied", wrap(RateLimitConfig{MaxHeld: -1}, Policy{Budget: always}), "10.0.0.1:5555", nil, http.StatusTooManyRequests},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			// The peer is the trusted proxy 10.0.0.1 in the XFF variant,
			// so the key comes from the header.
			r := &http.Request{Method: "GET", RemoteAddr: v.remote, Header: v.header}
			w := &benchWriter{h: http.Header{}}
			v.h.ServeHTTP(w, r) // create the bucket, and spend the one token of "denied"
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				v.h.ServeHTTP(w, r)
			}
			if w.status != v.status {
				b.Fatalf("status %d, want %d", w.status, v.status)
			}
		})
	}
	for _, v := range variants {
		b.Run(v.name+"-parallel", func(b *testing.B) {
			var n atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				// One client address per goroutine: distinct buckets,
				// as under real traffic.
				i := n.Add(1)
				hdr := v.header
				remote := fmt.Sprintf("10.0.%d.%d:5555", i/256, i%256)
				if hdr != nil {
					hdr = http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.%d.%d", i/256, i%256)}}
				}
				r := &http.Request{Method: "GET", RemoteAddr: remote, Header: hdr}
				w := &benchWriter{h: http.Header{}}
				for pb.Next() {
					w.reset()
					v.h.ServeHTTP(w, r)
				}
			})
		})
	}
}
