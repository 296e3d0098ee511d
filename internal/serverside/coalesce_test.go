package serverside

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCoalesceBoundsResolve(t *testing.T) {
	b, err := CoalesceBounds{}.Resolve("x.Config")
	require.NoError(t, err)
	assert.Equal(t, CoalesceBounds{Timeout: 10 * time.Second, MaxKeys: 10000, MaxWaiters: 1000}, b)
	for _, tc := range []struct {
		b     CoalesceBounds
		field string
	}{
		{CoalesceBounds{Timeout: -1}, "x.Config.Timeout"},
		{CoalesceBounds{MaxKeys: -1}, "x.Config.MaxKeys"},
		{CoalesceBounds{MaxWaiters: -1}, "x.Config.MaxWaiters"},
	} {
		_, err := tc.b.Resolve("x.Config")
		assert.Error(t, err)
		assert.ErrorContains(t, err, tc.field)
	}
}

func TestCoalescer(t *testing.T) {
	c := NewCoalescer[string](CoalesceBounds{Timeout: time.Second, MaxKeys: 2, MaxWaiters: 1})
	key := []byte("a")
	fa, leader := c.Join(key)
	require.True(t, leader)
	key[0] = 'z' // the caller may reuse the key's storage
	fa2, leader := c.Join([]byte("a"))
	assert.Same(t, fa, fa2)
	assert.False(t, leader)
	none, _ := c.Join([]byte("a"))
	assert.Nil(t, none, "past MaxWaiters")
	fb, leader := c.Join([]byte("b"))
	require.True(t, leader)
	none, _ = c.Join([]byte("c"))
	assert.Nil(t, none, "past MaxKeys")
	k, w := c.InFlight()
	assert.Equal(t, 2, k)
	assert.Equal(t, 1, w)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := fa.Wait(ctx)
	assert.ErrorIs(t, err, context.Canceled)

	c.Finish(fa, "A", Shared)
	c.Finish(fa, "ignored", Panicked) // only the first counts
	v, end, err := fa.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "A", v)
	assert.Equal(t, Shared, end)
	fa3, leader := c.Join([]byte("a"))
	assert.True(t, leader, "a new flight after the end")
	assert.NotSame(t, fa, fa3)
	c.Finish(fb, "", Declined)
	c.Finish(fa3, "", Declined)
	k, w = c.InFlight()
	assert.Zero(t, k+w)
}

func TestDetach(t *testing.T) {
	type ctxKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, 1))
	ctx, stop := Detach(parent, time.Hour)
	defer stop()
	cancel()
	assert.NoError(t, ctx.Err(), "the parent's cancellation does not reach it")
	assert.Equal(t, 1, ctx.Value(ctxKey{}))
	_, ok := ctx.Deadline()
	assert.True(t, ok, "bounded")
}
