package httpmw

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// benchCoordinator returns a coordinator with one rollout fully released
// and a cache that never expires within a benchmark, so that Due answers
// from memory, as it does on nearly every request in production.
func benchCoordinator(b *testing.B) (*invalidate.Coordinator, uint64) {
	clk := newManualClock()
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, CacheTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	st, err := c.Start(context.Background(), invalidate.Rollout{ID: "r", Scope: "tag:catalog", Cohorts: 1, Rate: 1000,
		Clients: 1, Coverage: 0.1, By: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	clk.Add(time.Second)
	if err := c.Advance(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c, st.Rollout.Epoch
}

// BenchmarkInvalidate measures Invalidate over a real coordinator:
// "current" is a client that has applied every epoch (the common case: one
// cached AppendDue, nothing to send), "due" one that is told to drop a
// scope (the field values are allocated), "bypass" a request without
// headerEpoch.
//
//	go test -run '^$' -bench 'BenchmarkInvalidate|BenchmarkAdmit' -benchmem ./httpmw/
func BenchmarkInvalidate(b *testing.B) {
	c, epoch := benchCoordinator(b)
	mw, err := Invalidate(c, InvalidateConfig{})
	if err != nil {
		b.Fatal(err)
	}
	h := mw(bare)
	for _, v := range []struct {
		name   string
		header http.Header
	}{
		{"bypass", http.Header{}},
		{"current", http.Header{headerClient: {"client-42"}, headerEpoch: {fmt.Sprint(epoch)}}},
		{"due", http.Header{headerClient: {"client-42"}, headerEpoch: {"0"}}},
	} {
		b.Run(v.name, func(b *testing.B) {
			r := &http.Request{Method: "GET", RemoteAddr: "10.0.0.1:5555", Header: v.header}
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, r)
			}
			if w.status != 0 {
				b.Fatalf("status %d", w.status)
			}
		})
		b.Run(v.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := &http.Request{Method: "GET", RemoteAddr: "10.0.0.1:5555", Header: v.header}
				w := &benchWriter{h: http.Header{}}
				for pb.Next() {
					w.reset()
					h.ServeHTTP(w, r)
				}
			})
		})
	}
}

// BenchmarkAdmit measures Admit over a real in-process gate: "rejoin"
// is a client presenting a valid ticket (verified and re-issued on every
// request: two HMACs), "refused" a new session when the budget is spent.
func BenchmarkAdmit(b *testing.B) {
	a, err := admission.New(limiter.Every(time.Hour, 1), admission.Config{Config: limiter.Config{Clock: stoppedClock{}},
		TicketKeys: testTicketKeys, TicketTTL: time.Hour, Horizon: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	d, err := a.Admit(context.Background(), "client-42", "")
	if err != nil || !d.Admitted {
		b.Fatal(d, err)
	}
	mw, err := Admit(a, AdmitConfig{})
	if err != nil {
		b.Fatal(err)
	}
	h := mw(bare)
	for _, v := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"rejoin", http.Header{headerClient: {"client-42"}, headerTicket: {d.Ticket}}, 0},
		{"refused", http.Header{headerClient: {"client-43"}}, http.StatusServiceUnavailable},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := &http.Request{Method: "GET", RemoteAddr: "10.0.0.1:5555", Header: v.header}
				w := &benchWriter{h: http.Header{}}
				ran := false
				for pb.Next() {
					w.reset()
					h.ServeHTTP(w, r)
					ran = true
				}
				if ran && w.status != v.status {
					b.Errorf("status %d, want %d", w.status, v.status)
				}
			})
		})
	}
}
