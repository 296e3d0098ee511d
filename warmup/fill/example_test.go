package fill_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/warmup/fill"
)

// mapCache is a Cache in a map: the caller's cache, which a Group fills.
type mapCache struct {
	mu sync.Mutex
	m  map[string]fill.Entry[string]
}

func (c *mapCache) Get(_ context.Context, key string) (fill.Entry[string], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

func (c *mapCache) Set(_ context.Context, key string, e fill.Entry[string]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = e
}

// loadPage is the fill: it reads a page from the origin (here, a string)
// and says how long the page stays fresh.
func loadPage(_ context.Context, key string) (string, time.Duration, error) {
	return "<h1>" + key + "</h1>", time.Minute, nil
}

func Example() {
	cache := &mapCache{m: map[string]fill.Entry[string]{}}
	g, err := fill.New[string](cache, fill.Config{StaleIfError: time.Hour})
	if err != nil {
		panic(err)
	}
	defer g.Close()
	ctx := context.Background()

	r, err := g.Do(ctx, "home", loadPage) // a miss: one fill, however many callers
	fmt.Println(r.Value, r.Source, err)
	r, err = g.Do(ctx, "home", loadPage) // fresh: from the cache
	fmt.Println(r.Value, r.Source, err)

	// The entry expired and the origin is down: within StaleIfError the
	// stale page is served, and the failure is told.
	cache.Set(ctx, "home", fill.Entry[string]{Value: "<h1>old</h1>", Expires: time.Now().Add(-time.Minute)})
	r, err = g.Do(ctx, "home", func(context.Context, string) (string, time.Duration, error) {
		return "", 0, errors.New("origin down")
	})
	fmt.Println(r.Value, r.Source, r.FillErr, err)
	// Output:
	// <h1>home</h1> fill <nil>
	// <h1>home</h1> cache <nil>
	// <h1>old</h1> stale-on-error origin down <nil>
}

// pageCodec hands pages off between nodes as their bytes.
type pageCodec struct{}

func (pageCodec) Encode(page string) ([]byte, error) { return []byte(page), nil }
func (pageCodec) Decode(b []byte) (string, error)    { return string(b), nil }

// Two nodes, each with a cache of its own in memory, and one Redis: a page
// one node filled is handed to the other, which does not fill it again.
func ExampleNewShared_handoff() {
	srv, stop, err := redistest.StartMain() // a private redis-server for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	client := redis.NewClient(srv.Options())
	defer client.Close()

	r := fleet.Redis{Client: client, Name: "pages"}
	cfg := fill.SharedConfig[string]{Handoff: pageCodec{}}
	a, err := fill.NewShared[string](&mapCache{m: map[string]fill.Entry[string]{}}, r, cfg)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := fill.NewShared[string](&mapCache{m: map[string]fill.Entry[string]{}}, r, cfg)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx := context.Background()

	ra, err := a.Do(ctx, "home", loadPage) // node a fills the page and hands it off
	fmt.Println(ra.Value, ra.Source, err)
	rb, err := b.Do(ctx, "home", loadPage) // node b misses its cache: a's page, no fill
	fmt.Println(rb.Value, rb.Source, err)

	// An invalidation of "home" calls Forget once, on any node, then
	// deletes the page from every node's cache.
	fmt.Println(b.Forget(ctx, "home"))
	// Output:
	// <h1>home</h1> fill <nil>
	// <h1>home</h1> handoff <nil>
	// <nil>
}
