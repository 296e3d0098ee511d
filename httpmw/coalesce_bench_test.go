package httpmw

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herdcap/herdcap/internal/serverside"
)

// small is the handler the Coalesce benchmarks wrap: one header field and a
// short body.
var small = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header()["Content-Type"] = textPlain
	_, _ = io.WriteString(w, "hello, world")
})

// BenchmarkCoalesce measures Coalesce's paths. "pass-through" is a request
// it does not coalesce (a POST), against "bare", the handler alone;
// "lead" a GET that finds no flight and so leads one (it buffers the
// response and replays it to itself); "waiter" a GET that joins a flight
// that has ended and replays the leader's response (the cost of a
// coalesced hit, without the wait); "parallel" concurrent GETs of one key.
func BenchmarkCoalesce(b *testing.B) {
	mw, err := Coalesce(CoalesceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	m := mw(small).(*coalescer)
	get := httptest.NewRequest(http.MethodGet, "http://example.com/a?b=c", nil)
	post := httptest.NewRequest(http.MethodPost, "http://example.com/a?b=c", nil)
	run := func(b *testing.B, h http.Handler, r *http.Request) {
		w := &benchWriter{h: make(http.Header)}
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			h.ServeHTTP(w, r)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, small, post) })
	b.Run("pass-through", func(b *testing.B) { run(b, m, post) })
	b.Run("lead", func(b *testing.B) { run(b, m, get) })
	b.Run("waiter", func(b *testing.B) {
		c := serverside.NewCoalescer[*replay](serverside.CoalesceBounds{MaxKeys: 1, MaxWaiters: 1})
		f, _ := c.Join([]byte("k"))
		c.Finish(f, &replay{status: 200, header: http.Header{"Content-Type": textPlain}, body: []byte("hello, world")}, serverside.Shared)
		w := &benchWriter{h: make(http.Header)}
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			bp := keyBufs.Get().(*[]byte)
			key, ok := m.key((*bp)[:0], get)
			if !ok {
				b.Fatal("no key")
			}
			*bp = key
			keyBufs.Put(bp)
			m.wait(w, get, f)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := &benchWriter{h: make(http.Header)}
			for pb.Next() {
				w.reset()
				m.ServeHTTP(w, get)
			}
		})
	})
}
