package warmup_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/warmup"
)

// A warm of four keys, hottest first, paced by a fixed budget, into an
// add-only cache.
func Example() {
	budget, _ := limiter.NewLocal(limiter.PerSecond(1000, 10), limiter.Config{})
	w, err := warmup.New(warmup.Config{Store: warmup.NewMemoryStore(), Budget: budget, Workers: 1, Interval: 10 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	var mu sync.Mutex
	cache := map[string]string{}
	var order []string
	err = w.Start(context.Background(), warmup.Warm{
		ID: "push-2026-12-07",
		Source: warmup.Slice([]warmup.Item{
			{Key: "home", Weight: 900}, {Key: "cart", Weight: 300}, {Key: "help", Weight: 20}, {Key: "about", Weight: 5},
		}),
		Fetch: func(_ context.Context, key string) (any, time.Time, error) {
			mu.Lock()
			order = append(order, key)
			mu.Unlock()
			return "<page " + key + ">", time.Now(), nil
		},
		Store: func(_ context.Context, key string, v any, _ time.Time) error {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := cache[key]; !ok { // add-only
				cache[key] = v.(string)
			}
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	for {
		st, _ := w.Status(context.Background(), "push-2026-12-07")
		if st.Phase == warmup.Done {
			fmt.Println(st.Phase, st.Done, "of", st.Keys, "keys")
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	fmt.Println(order, cache["home"])
	// Output:
	// done 4 of 4 keys
	// [home cart help about] <page home>
}

// A node counts the keys it is asked for in a Sketch; a warm from its Top
// is staged, so that the other nodes join it with no source of their own.
func ExampleSketch() {
	sk, _ := warmup.NewSketch(3)
	for _, k := range []string{"home", "cart", "home", "help", "home", "cart", "about"} {
		sk.Observe(k)
	}
	// A warm from it: warmup.Warm{ID: "hot", Source: warmup.Slice(sk.Top()), Staged: true, ...}.
	// "about" took the place of "help", the least counted, and its count.
	for _, it := range sk.Top() {
		fmt.Println(it.Key, it.Weight)
	}
	// Output:
	// home 3
	// about 2
	// cart 2
}
