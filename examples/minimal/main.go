// Command minimal is the smallest complete herdcap program: an HTTP server
// whose clients may each make 5 requests per second, in bursts of up to 10,
// counted in process. Over that they get 429 Too Many Requests with
// Retry-After and the IETF RateLimit headers.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/limiter"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	budget, err := limiter.NewLocal(limiter.PerSecond(5, 10), limiter.Config{}) // per client IP
	if err != nil {
		log.Fatal(err)
	}
	rateLimit, err := httpmw.RateLimit(httpmw.RateLimitConfig{}, httpmw.Policy{Budget: budget})
	if err != nil {
		log.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	log.Fatal(http.ListenAndServe(*addr, rateLimit(hello)))
}
