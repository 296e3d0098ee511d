package httpmw_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/limiter"
)

// fixedClock stops time, so that the printed header values are exact.
type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func (fixedClock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

// show sends a GET with the given header to url and prints the status and
// the rate-limit fields.
func show(url string, header http.Header) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header = header
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Printf("%d RateLimit: %s", res.StatusCode, res.Header.Get("RateLimit"))
	if ra := res.Header.Get("Retry-After"); ra != "" {
		fmt.Printf(" Retry-After: %s", ra)
	}
	fmt.Printf(" body: %q\n", body)
}

func ExampleRateLimit() {
	// Two requests at once per client IP, then one every 2 seconds.
	budget, err := limiter.NewLocal(limiter.PerSecond(0.5, 2), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{}, httpmw.Policy{Budget: budget})
	if err != nil {
		fmt.Println(err)
		return
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	srv := httptest.NewServer(mw(hello))
	defer srv.Close()

	res, err := http.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println("RateLimit-Policy:", res.Header.Get("RateLimit-Policy"))
	for range 2 {
		show(srv.URL, nil)
	}
	// Output:
	// RateLimit-Policy: "default";q=2;w=4
	// 200 RateLimit: "default";r=0;t=4 body: "hello"
	// 429 RateLimit: "default";r=0;t=2 Retry-After: 2 body: "Too Many Requests\n"
}

func ExampleClientIP() {
	budget, err := limiter.NewLocal(limiter.PerSecond(1, 5), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The test server's peer is 127.0.0.1: call it our reverse proxy. An
	// IPv6 client is keyed by its /64.
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{ClientIP: httpmw.ClientIP{TrustedProxies: []string{"127.0.0.1/32"}}},
		httpmw.Policy{Budget: budget})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(mw(http.NotFoundHandler()))
	defer srv.Close()

	// Each client behind the proxy has its own bucket; what a client
	// writes left of the proxy's entry does not count.
	show(srv.URL, http.Header{"X-Forwarded-For": {"203.0.113.1"}})
	show(srv.URL, http.Header{"X-Forwarded-For": {"198.51.100.99, 203.0.113.1"}})
	show(srv.URL, http.Header{"Forwarded": {`for="[2001:db8::2]:4711"`}})
	show(srv.URL, http.Header{"Forwarded": {`for="[2001:db8::3]:4711"`}}) // the same /64
	// Output:
	// 404 RateLimit: "default";r=4;t=1 body: "404 page not found\n"
	// 404 RateLimit: "default";r=3;t=2 body: "404 page not found\n"
	// 404 RateLimit: "default";r=4;t=1 body: "404 page not found\n"
	// 404 RateLimit: "default";r=3;t=2 body: "404 page not found\n"
}

func ExamplePolicy() {
	budget, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	byAPIKey := func(r *http.Request) (string, error) {
		k := r.Header.Get("X-Api-Key")
		if k == "" {
			return "", fmt.Errorf("no X-Api-Key: %w", httpmw.ErrNoKey) // 400
		}
		return "api-key:" + k, nil
	}
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{}, httpmw.Policy{Name: "per-key", Budget: budget, Key: byAPIKey})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(mw(http.NotFoundHandler()))
	defer srv.Close()

	show(srv.URL, http.Header{"X-Api-Key": {"alice"}})
	show(srv.URL, http.Header{"X-Api-Key": {"alice"}})
	show(srv.URL, http.Header{"X-Api-Key": {"bob"}})
	show(srv.URL, nil)
	// Output:
	// 404 RateLimit: "per-key";r=0;t=1 body: "404 page not found\n"
	// 429 RateLimit: "per-key";r=0;t=1 Retry-After: 1 body: "Too Many Requests\n"
	// 404 RateLimit: "per-key";r=0;t=1 body: "404 page not found\n"
	// 400 RateLimit:  body: "Bad Request\n"
}

func ExampleDenialFromContext() {
	budget, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	problem := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := httpmw.DenialFromContext(r.Context())
		w.Header().Set("Content-Type", "application/problem+json")
		fmt.Fprintf(w, `{"status":%d,"title":%q,"policy":%q}`, d.Status, http.StatusText(d.Status), d.Policy)
	})
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{Denied: problem}, httpmw.Policy{Budget: budget})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(mw(http.NotFoundHandler()))
	defer srv.Close()

	show(srv.URL, nil)
	show(srv.URL, nil)
	// Output:
	// 404 RateLimit: "default";r=0;t=1 body: "404 page not found\n"
	// 429 RateLimit: "default";r=0;t=1 Retry-After: 1 body: "{\"status\":429,\"title\":\"Too Many Requests\",\"policy\":\"default\"}"
}

func ExampleRateLimit_badConfig() {
	budget, err := limiter.NewLocal(limiter.PerSecond(10, 10), limiter.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = httpmw.RateLimit(httpmw.RateLimitConfig{ClientIP: httpmw.ClientIP{TrustedProxies: []string{"10.0.0.0/8", "10.0.0.300/32"}}},
		httpmw.Policy{Budget: budget})
	fmt.Println(errors.Is(err, httpmw.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// httpmw: invalid config: RateLimitConfig.ClientIP.TrustedProxies[1]: CIDR "10.0.0.300/32": netip.ParsePrefix("10.0.0.300/32"): ParseAddr("10.0.0.300"): IPv4 field has value >255
}

func ExampleRateLimit_policies() {
	// Two limits on every request: 5 at once per client IP, and a plan's
	// quota per API key (a shadow policy only reports, to try a limit
	// out). Both budgets are asked for every request; the most
	// restrictive answer decides, and one list reports them all.
	perIP, err := limiter.NewLocal(limiter.PerSecond(1, 5), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	perKey, err := limiter.NewLocal(limiter.PerMinute(60, 60), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	trial, err := limiter.NewLocal(limiter.PerSecond(1, 1), limiter.Config{Clock: fixedClock{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	apiKey := func(r *http.Request) (string, error) {
		if k := r.Header.Get("X-Api-Key"); k != "" {
			return k, nil
		}
		return "", httpmw.ErrNoKey
	}
	plan := func(r *http.Request) (limiter.Limit, error) {
		if r.Header.Get("X-Api-Key") == "free-tier" {
			return limiter.PerMinute(60, 2), nil // 2 at once on the free plan
		}
		return limiter.Limit{}, nil // the budget's own
	}
	mw, err := httpmw.RateLimit(httpmw.RateLimitConfig{ShadowHeaders: true, LegacyHeaders: true},
		httpmw.Policy{Name: "ip", Budget: perIP},
		httpmw.Policy{Name: "plan", Budget: perKey, Key: apiKey, Limit: plan},
		httpmw.Policy{Name: "trial", Budget: trial, Key: apiKey, Shadow: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(mw(http.NotFoundHandler()))
	defer srv.Close()

	for range 3 {
		res, err := http.DefaultClient.Do(&http.Request{Method: http.MethodGet, URL: mustParse(srv.URL),
			Header: http.Header{"X-Api-Key": {"free-tier"}}})
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println(res.StatusCode, res.Header.Values("RateLimit-Policy"))
		fmt.Println("   ", res.Header.Get("RateLimit"), "| X-RateLimit-Remaining:", res.Header.Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 404 ["ip";q=5;w=5 "plan";q=2;w=2 "trial";q=1;w=1]
	//     "ip";r=4;t=1, "plan";r=1;t=1, "trial";r=0;t=1 | X-RateLimit-Remaining: 1
	// 404 ["ip";q=5;w=5 "plan";q=2;w=2 "trial";q=1;w=1]
	//     "ip";r=3;t=2, "plan";r=0;t=2, "trial";r=0;t=1 | X-RateLimit-Remaining: 0
	// 429 ["ip";q=5;w=5 "plan";q=2;w=2 "trial";q=1;w=1]
	//     "ip";r=2;t=3, "plan";r=0;t=1, "trial";r=0;t=2 | X-RateLimit-Remaining: 0
}

// mustParse parses a URL the test server gave.
func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
