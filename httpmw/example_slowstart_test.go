package httpmw_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

func ExampleSlowStart() {
	// A node just started: it serves a tenth of its clients at first, all
	// of them after a minute.
	g, err := slowstart.New(slowstart.Config{Window: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	ss, err := httpmw.SlowStart(g, httpmw.SlowStartConfig{})
	if err != nil {
		log.Fatal(err)
	}
	h := ss(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") }))

	served, shed := 0, map[int]int{}
	for i := range 100 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Herdcap-Client", fmt.Sprint("client-", i))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			served++
		} else {
			shed[w.Code]++
		}
	}
	// About 10 of 100 clients are served (a few more if the machine takes
	// seconds of the window meanwhile); the others get 503 with
	// Retry-After and Herdcap-Retry-After-Ms.
	fmt.Println("a few served:", served > 0 && served < 30)
	fmt.Println("the others 503:", shed[http.StatusServiceUnavailable] == 100-served)
	// Output:
	// a few served: true
	// the others 503: true
}
