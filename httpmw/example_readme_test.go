package httpmw_test

import (
	"log"
	"net/http"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// Example_server is the README's server side: a rate limit, reconnect
// admission and invalidation notices around an application. It is compiled,
// not run: it serves forever.
func Example_server() {
	budget, err := limiter.NewLocal(limiter.PerSecond(100, 200), limiter.Config{}) // or fleet.NewStrict / NewLeased for the fleet
	if err != nil {
		log.Fatal(err)
	}
	gate, err := admission.New(limiter.PerSecond(500, 50), admission.Config{}) // or admission.NewShared
	if err != nil {
		log.Fatal(err)
	}
	coordinator, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{}) // or on invalidate.NewRedisStore
	if err != nil {
		log.Fatal(err)
	}
	app := http.NotFoundHandler() // your handler

	rl, err := httpmw.RateLimit(httpmw.RateLimitConfig{ClientIP: httpmw.ClientIP{TrustedProxies: []string{"10.0.0.0/8"}}},
		httpmw.Policy{Budget: budget})
	if err != nil {
		log.Fatal(err)
	}
	adm, err := httpmw.Admit(gate, httpmw.AdmitConfig{}) // 503 + Retry-After (+ the exact slot in ms) for new sessions over budget
	if err != nil {
		log.Fatal(err)
	}
	inv, err := httpmw.Invalidate(coordinator, httpmw.InvalidateConfig{}) // Herdcap-Invalidate notices on ordinary responses
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", rl(adm(inv(app)))))
}

// Example_client is the README's client side: an http.Client that applies
// notices once and in order, and backs off as servers say. It is compiled,
// not run: it needs a server.
func Example_client() {
	dropCache := func(n invalidate.Notice) { log.Printf("drop %s", n.Scope) } // your cache's invalidation
	tr, err := httpmw.NewTransport(httpmw.TransportConfig{ClientID: "client-42", OnInvalidate: dropCache})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: tr}
	res, err := client.Get("http://127.0.0.1:8080/")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
}
