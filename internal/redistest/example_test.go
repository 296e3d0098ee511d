package redistest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redistest"
)

// StartMain gives a package one private server; in a test, Start(t) does the
// same for one test and stops it in t.Cleanup.
func ExampleStartMain() {
	srv, stop, err := redistest.StartMain()
	if err != nil {
		fmt.Println(err) // wraps redistest.ErrNoRedis if redis-server is missing
		return
	}
	defer stop()

	c := redis.NewClient(srv.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Set(ctx, "greeting", "hello", 0)
	fmt.Println(c.Get(ctx, "greeting").Val())
	// Output: hello
}

// A three-master cluster; keys in different slots land on different masters.
func ExampleStartClusterMain() {
	cl, stop, err := redistest.StartClusterMain()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	c := redis.NewClusterClient(cl.ClusterOptions())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c"} {
		c.Set(ctx, k, k, 0)
	}
	for i, n := range cl.Nodes() {
		nc := redis.NewClient(n.Options())
		fmt.Printf("master %d holds %d key(s)\n", i, nc.DBSize(ctx).Val())
		nc.Close()
	}
	// Output:
	// master 0 holds 1 key(s)
	// master 1 holds 1 key(s)
	// master 2 holds 1 key(s)
}
