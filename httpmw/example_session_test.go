package httpmw_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// movingClock moves only when told to, so that the examples' epochs and
// slots are exact.
type movingClock struct{ t time.Time }

func (c *movingClock) Now() time.Time { return c.t }

func (c *movingClock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

func ExampleInvalidate() {
	ctx := context.Background()
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	coord, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk})
	if err != nil {
		fmt.Println(err)
		return
	}
	inv, err := httpmw.Invalidate(coord, httpmw.InvalidateConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(inv(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "page")
	})))
	defer srv.Close()

	// Drop the catalog, in one wave: a small rollout.
	_, _ = coord.Start(ctx, invalidate.Rollout{ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 1,
		Rate: 100, Clients: 10, Coverage: 0.1, By: "deployer"})
	clk.t = clk.t.Add(time.Second)
	_ = coord.Advance(ctx) // what coord.Run does every second

	for _, applied := range []string{"0", "1767225600000"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Herdcap-Client", "client-7")
		req.Header.Set("Herdcap-Epoch", applied)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Printf("applied %s: %q %q\n", applied, res.Header.Get("Herdcap-Invalidate"), res.Header.Get("Herdcap-Epoch"))
	}
	// Output:
	// applied 0: "\"tag:catalog\";epoch=1767225600000;id=\"catalog-v2\"" "1767225600000"
	// applied 1767225600000: "" ""
}

func ExampleAdmit() {
	// 2 new sessions per second, 1 at once, on a clock that stands still.
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	gate, err := admission.New(limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gate.Close()
	adm, err := httpmw.Admit(gate, httpmw.AdmitConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(adm(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "welcome")
	})))
	defer srv.Close()

	connect := func(id string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Herdcap-Client", id)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Printf("%s: %d Retry-After=%q Herdcap-Retry-After-Ms=%q\n", id, res.StatusCode,
			res.Header.Get("Retry-After"), res.Header.Get("Herdcap-Retry-After-Ms"))
	}
	connect("alice")
	connect("bob") // booked: his slot is 864 ms away
	clk.t = clk.t.Add(864 * time.Millisecond)
	connect("bob") // back at his slot: let in
	// Output:
	// alice: 200 Retry-After="" Herdcap-Retry-After-Ms=""
	// bob: 503 Retry-After="1" Herdcap-Retry-After-Ms="864"
	// bob: 200 Retry-After="" Herdcap-Retry-After-Ms=""
}

func ExampleNewTransport() {
	ctx := context.Background()
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	coord, _ := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, CacheTTL: -1})
	inv, _ := httpmw.Invalidate(coord, httpmw.InvalidateConfig{})
	srv := httptest.NewServer(inv(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "fresh data")
	})))
	defer srv.Close()

	// The client: its ID, and what it does with a notice.
	cache := map[string]string{"tag:catalog": "stale data"}
	tr, err := httpmw.NewTransport(httpmw.TransportConfig{
		ClientID: "client-7",
		OnInvalidate: func(n invalidate.Notice) {
			fmt.Printf("dropping %s (rollout %s)\n", n.Scope, n.RolloutID)
			delete(cache, n.Scope)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := &http.Client{Transport: tr}

	_, _ = coord.Start(ctx, invalidate.Rollout{ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 1,
		Rate: 100, Clients: 10, Coverage: 0.1, By: "deployer"})
	clk.t = clk.t.Add(time.Second)
	_ = coord.Advance(ctx)

	for range 2 { // the notice comes once: the client sends its new epoch
		res, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println("applied epoch", tr.Applied(), "cached scopes", len(cache))
	}
	// Output:
	// dropping tag:catalog (rollout catalog-v2)
	// applied epoch 1767225600000 cached scopes 0
	// applied epoch 1767225600000 cached scopes 0
}
