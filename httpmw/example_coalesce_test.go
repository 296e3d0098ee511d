package httpmw_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/herdcap/herdcap/httpmw"
)

// ExampleCoalesce puts Coalesce in front of a handler whose responses
// depend only on the URL and the Accept field. Concurrent identical GETs
// run it once and share its response; a request with credentials always
// runs it for itself.
func ExampleCoalesce() {
	report := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "report %s as %s", r.URL.Query().Get("day"), r.Header.Get("Accept"))
	})
	coalesce, err := httpmw.Coalesce(httpmw.CoalesceConfig{
		Vary:        []string{"Accept"}, // the response depends on it
		MarkReplays: true,               // Herdcap-Coalesced: 1 on the responses shared
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(coalesce(report))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/report?day=mon", nil)
	req.Header.Set("Accept", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode, string(body))

	_, err = httpmw.Coalesce(httpmw.CoalesceConfig{MaxBody: -1})
	fmt.Println(err)
	// Output:
	// 200 report mon as text/plain
	// httpmw: invalid config: httpmw.CoalesceConfig.MaxBody must be >= 0, got -1
}
