package invalidate_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// Example_rollingInvalidation is the README's rollout on a shared Redis. It
// is compiled, not run: it needs a Redis at the address it names.
func Example_rollingInvalidation() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.5:6379", ContextTimeoutEnabled: true})
	store, err := invalidate.NewRedisStore(fleet.Redis{Client: rdb}) // or invalidate.NewMemoryStore() for one process
	if err != nil {
		log.Fatal(err)
	}
	c, err := invalidate.NewCoordinator(store, invalidate.Config{Node: "node-7"})
	if err != nil {
		log.Fatal(err)
	}
	go c.Run(ctx) // advances rollouts; any node may

	_, err = c.Start(ctx, invalidate.Rollout{
		ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 20, Rate: 500, // clients per second, fleet-wide
		MinDuration: 5 * time.Minute, By: "deployer"})
	if err != nil {
		log.Fatal(err)
	}

	// On each request of a client that has applied epoch 41: what must it drop now?
	notices, err := c.AppendDue(ctx, nil, "client-42", 41)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range notices {
		log.Printf("client-42 drops %s (epoch %d)", n.Scope, n.Epoch)
	}

	by := invalidate.By{Who: "alice", Reason: "wrong data file"}
	if err := c.Abort(ctx, "catalog-v2", by); err != nil { // fleet-wide, within one advance
		log.Fatal(err)
	}
}
