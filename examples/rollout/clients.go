package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter/retry"
)

// startClients starts the polling clients and returns a function that waits
// for them to stop (they stop when ctx is done); it may be called more
// than once.
func (f *fleet) startClients(ctx context.Context) func() {
	var wg sync.WaitGroup
	for i := range f.c.clients {
		wg.Go(func() { f.client(ctx, i) })
	}
	var once sync.Once
	return func() { once.Do(wg.Wait) }
}

// client polls the nodes in turn until ctx is done. Each client is one
// Transport: it sends its ID, applied epoch and resume token, and applies
// the notices it is given; on "invalidate everything" it drops its cache
// (here, a page it refetches on every poll anyway) and its session, so its
// next request is a reconnect through admission.
func (f *fleet) client(ctx context.Context, i int) {
	id := fmt.Sprintf("client-%04d", i)
	var (
		tr     *httpmw.Transport
		polled atomic.Int32 // the node of the request in flight
	)
	tr, err := httpmw.NewTransport(httpmw.TransportConfig{
		Base:     f.base,
		ClientID: id,
		Retry:    retry.Policy{MaxWait: 15 * time.Second},
		OnInvalidate: func(n invalidate.Notice) {
			f.rec.notice(id, int(polled.Load()), n)
			if n.Scope == invalidate.ScopeAll {
				// Drop everything, the session included: the next
				// request is a reconnect.
				tr.ResetSession()
			}
		},
	})
	if err != nil {
		panic(err) // the config above is valid
	}
	client := &http.Client{Transport: tr}
	// Clients start spread over one poll interval, as a fleet does.
	if !sleepCtx(ctx, rand.N(f.c.poll)) {
		return
	}
	for k := 0; ; k++ {
		n := (i + k) % len(f.nodes)
		polled.Store(int32(n))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.nodes[n].url+"/catalog", nil)
		if err != nil {
			return
		}
		if res, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
		if !sleepCtx(ctx, f.c.poll) {
			return
		}
	}
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
