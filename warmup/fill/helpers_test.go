package fill

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// memCache is an in-process Cache. sets receives every Set when not nil.
type memCache[V any] struct {
	mu   sync.Mutex
	m    map[string]Entry[V]
	sets chan Entry[V]
}

func newMemCache[V any]() *memCache[V] { return &memCache[V]{m: make(map[string]Entry[V])} }

func (c *memCache[V]) Get(_ context.Context, key string) (Entry[V], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

func (c *memCache[V]) Set(_ context.Context, key string, e Entry[V]) {
	c.mu.Lock()
	c.m[key] = e
	c.mu.Unlock()
	if c.sets != nil {
		c.sets <- e
	}
}

// put stores e under key without notifying sets.
func (c *memCache[V]) put(key string, e Entry[V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = e
}

// newGroupT returns a Group on cache, closed at the test's end.
func newGroupT[V any](t *testing.T, cache Cache[V], cfg Config) *Group[V] {
	t.Helper()
	g, err := New(cache, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return g
}
