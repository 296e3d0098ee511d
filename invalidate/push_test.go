package invalidate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

// session is a test Session: it records what it is told and the most
// concurrent Notify calls across sessions.
type session struct {
	id       string
	mu       sync.Mutex
	applied  uint64
	got      []Notice
	fail     bool
	inFlight *atomic.Int64
	most     *atomic.Int64
}

func (s *session) ClientID() string { return s.id }
func (s *session) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}
func (s *session) Notify(_ context.Context, n Notice) error {
	now := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.most.Load()
		if now <= m || s.most.CompareAndSwap(m, now) {
			break
		}
	}
	time.Sleep(100 * time.Microsecond) // hold the slot so that overlap shows
	if s.fail {
		return errors.New("connection reset")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, n)
	s.applied = n.Epoch
	return nil
}

func newSessions(n int) ([]Session, []*session) {
	var inFlight, most atomic.Int64
	var ss []Session
	var raw []*session
	for i := range n {
		s := &session{id: fmt.Sprintf("client-%d", i), inFlight: &inFlight, most: &most}
		ss = append(ss, s)
		raw = append(raw, s)
	}
	return ss, raw
}

func TestPushNotifiesReleasedCohortsOnce(t *testing.T) {
	ctx := context.Background()
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	r := ro("a")
	mustStart(t, c, r)
	for s := 1; s <= 4; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	p, err := NewPusher(c, WithConcurrency(3))
	require.NoError(t, err)
	ss, raw := newSessions(500)
	res, err := p.Push(ctx, ss)
	require.NoError(t, err)
	want := 0
	for _, s := range raw {
		released := limiter.Cohort("a", s.id, r.Cohorts) < 4
		if released {
			want++
			require.Len(t, s.got, 1, s.id)
		} else {
			require.Empty(t, s.got, s.id)
		}
	}
	assert.Equal(t, PushResult{Sessions: 500, Due: want, Notified: want, Notices: want}, res)
	assert.LessOrEqual(t, raw[0].most.Load(), int64(3), "bounded concurrency")
	assert.Greater(t, raw[0].most.Load(), int64(1), "and concurrent")

	res, err = p.Push(ctx, ss)
	require.NoError(t, err)
	assert.Zero(t, res.Due, "nothing twice")
}

func TestPushDrawsOnTheBudget(t *testing.T) {
	ctx := context.Background()
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	mustStart(t, c, ro("a"))
	for s := 1; s <= 10; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	budget, err := limiter.NewLocal(limiter.PerSecond(100, 50), limiter.WithClock(clk))
	require.NoError(t, err)
	p, err := NewPusher(c, WithPushBudget(budget, "push:a"), WithConcurrency(4))
	require.NoError(t, err)
	ss, _ := newSessions(200)
	res, err := p.Push(ctx, ss)
	require.NoError(t, err)
	assert.Equal(t, 200, res.Due)
	assert.Equal(t, 50, res.Notified, "the burst")
	assert.Equal(t, 150, res.Deferred)
	clk.Add(time.Second)
	res, err = p.Push(ctx, ss)
	require.NoError(t, err)
	assert.Equal(t, 150, res.Due)
	assert.Equal(t, 50, res.Notified, "one second refills 100, capped at the burst of 50")
}

func TestPushCountsFailuresAndStopsOnCancel(t *testing.T) {
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	mustStart(t, c, ro("a"))
	for s := 1; s <= 10; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	p, err := NewPusher(c)
	require.NoError(t, err)
	ss, raw := newSessions(20)
	for _, s := range raw[:5] {
		s.fail = true
	}
	res, err := p.Push(context.Background(), ss)
	require.NoError(t, err)
	assert.Equal(t, 5, res.Failed)
	assert.Equal(t, 15, res.Notified)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Push(ctx, ss)
	assert.ErrorIs(t, err, context.Canceled)
	res, err = p.Push(context.Background(), nil)
	assert.NoError(t, err)
	assert.Zero(t, res.Sessions)
}
