package invalidate

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
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
	p, err := NewPusher(c, PushConfig{Concurrency: 3})
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
	budget, err := limiter.NewLocal(limiter.PerSecond(100, 50), limiter.Config{Clock: clk})
	require.NoError(t, err)
	p, err := NewPusher(c, PushConfig{Budget: budget, BudgetKey: "push:a", Concurrency: 4})
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
	p, err := NewPusher(c, PushConfig{})
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

// goid returns the calling goroutine's ID, from its stack header.
func goid() string {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := strings.Fields(string(b[:n]))
	return f[1] // "goroutine N [running]:"
}

// orderSession records the order and goroutine of its notifications. The
// sessions of one orderSessions call share log, gor and the mutex that
// guards them: Push may notify them from several workers at once.
type orderSession struct {
	id      string
	applied uint64
	mu      *sync.Mutex
	log     *[]string
	gor     *[]string
	panicIn string // "ClientID", "Applied" or "Notify": panic there
}

func (s *orderSession) ClientID() string {
	if s.panicIn == "ClientID" {
		panic("no id")
	}
	return s.id
}

func (s *orderSession) Applied() uint64 {
	if s.panicIn == "Applied" {
		panic("no epoch")
	}
	return s.applied
}

func (s *orderSession) Notify(_ context.Context, n Notice) error {
	if s.panicIn == "Notify" {
		panic(fmt.Sprintf("boom in %s", s.id))
	}
	s.mu.Lock()
	*s.log = append(*s.log, s.id)
	*s.gor = append(*s.gor, goid())
	s.mu.Unlock()
	s.applied = n.Epoch
	return nil
}

func orderSessions(n int) ([]Session, []*orderSession, *[]string, *[]string) {
	var log, gor []string
	var mu sync.Mutex
	var ss []Session
	var raw []*orderSession
	for i := range n {
		s := &orderSession{id: fmt.Sprintf("client-%d", i), mu: &mu, log: &log, gor: &gor}
		ss = append(ss, s)
		raw = append(raw, s)
	}
	return ss, raw, &log, &gor
}

// TestPushSequential: at WithConcurrency(1) Push runs in the caller's
// goroutine, in slice order, so which clients the budget lets through is
// the same every time: the first ones due.
func TestPushSequential(t *testing.T) {
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	mustStart(t, c, ro("a"))
	for s := 1; s <= 10; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	for run := range 2 {
		budget, err := limiter.NewLocal(limiter.PerSecond(100, 30), limiter.Config{Clock: clk})
		require.NoError(t, err)
		p, err := NewPusher(c, PushConfig{Budget: budget, BudgetKey: "push", Concurrency: 1})
		require.NoError(t, err)
		ss, _, log, gor := orderSessions(100)
		res, err := p.Push(context.Background(), ss)
		require.NoError(t, err)
		assert.Equal(t, PushResult{Sessions: 100, Due: 100, Notified: 30, Notices: 30, Deferred: 70}, res, "run %d", run)
		want := make([]string, 30)
		for i := range want {
			want[i] = fmt.Sprintf("client-%d", i)
		}
		assert.Equal(t, want, *log, "the first 30, in order")
		me := goid()
		for _, g := range *gor {
			require.Equal(t, me, g, "Notify runs in the caller's goroutine")
		}
	}
}

// TestPushRecoversPanics: a session whose methods panic fails alone; the
// others are notified, and the error names the first one that panicked.
func TestPushRecoversPanics(t *testing.T) {
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	mustStart(t, c, ro("a"))
	for s := 1; s <= 10; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			p, err := NewPusher(c, PushConfig{Concurrency: workers})
			require.NoError(t, err)
			ss, raw, log, _ := orderSessions(40)
			raw[3].panicIn = "Notify"
			raw[10].panicIn = "ClientID"
			raw[20].panicIn = "Applied"
			raw[30].panicIn = "Notify"
			var res PushResult
			require.NotPanics(t, func() { res, err = p.Push(context.Background(), ss) })
			assert.Equal(t, PushResult{Sessions: 40, Due: 38, Notified: 36, Notices: 36, Failed: 4}, res)
			assert.Len(t, *log, 36, "every other session was notified")
			require.ErrorIs(t, err, ErrSessionPanic)
			var pe *SessionPanicError
			require.ErrorAs(t, err, &pe)
			if workers == 1 {
				assert.Equal(t, SessionPanicError{Index: 3, ClientID: "client-3", Call: "Notify", Value: "boom in client-3"}, *pe)
				assert.EqualError(t, err, `invalidate: push: session 3 (client "client-3"): Notify panicked: boom in client-3`)
			}
		})
	}
	// A panicking push budget fails that session, not the process.
	p, err := NewPusher(c, PushConfig{Concurrency: 1, Budget: panicBudget{}, BudgetKey: "push"})
	require.NoError(t, err)
	ss, _, _, _ := orderSessions(3)
	res, err := p.Push(context.Background(), ss)
	var pe *SessionPanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "push budget", pe.Call)
	assert.Equal(t, "client-0", pe.ClientID)
	assert.Equal(t, 3, res.Failed)
}

type panicBudget struct{}

func (panicBudget) Take(context.Context, limiter.Request) (limiter.Decision, error) { panic("bucket") }

// TestAppendWaves: each released run of cohorts is reported once per
// Pusher, and its clients are exactly the ones Due finds newly due.
func TestAppendWaves(t *testing.T) {
	ctx := context.Background()
	clk := newVClock(t0)
	c := newNode(t, NewMemoryStore(), clk)
	r := mustStart(t, c, ro("a")).Rollout
	p, err := NewPusher(c, PushConfig{})
	require.NoError(t, err)
	ws, err := p.AppendWaves(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, ws, "nothing released yet")
	for s := 1; s <= 3; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	ws, err = p.AppendWaves(ctx, ws[:0])
	require.NoError(t, err)
	require.Equal(t, []Wave{{RolloutID: "a", Epoch: r.Epoch, Cohorts: 10, From: 0, To: 3}}, ws)
	for i := range 300 {
		id := fmt.Sprintf("client-%d", i)
		assert.Equal(t, len(due(t, c, id, 0)) > 0, ws[0].Contains(id), id)
		assert.Equal(t, limiter.Cohort("a", id, 10), ws[0].Cohort(id))
	}
	ws, err = p.AppendWaves(ctx, ws[:0])
	require.NoError(t, err)
	assert.Empty(t, ws, "reported once")

	r2 := mustStart(t, c, ro("b")).Rollout
	for s := 4; s <= 5; s++ {
		advance(t, c, t0.Add(time.Duration(s)*time.Second))
	}
	ws, err = p.AppendWaves(ctx, ws[:0])
	require.NoError(t, err)
	require.Len(t, ws, 2, "both rollouts moved")
	assert.Equal(t, Wave{RolloutID: "a", Epoch: r.Epoch, Cohorts: 10, From: 3, To: 5}, ws[0])
	assert.Equal(t, "b", ws[1].RolloutID)
	assert.Equal(t, r2.Epoch, ws[1].Epoch)
	assert.Equal(t, 0, ws[1].From)

	// Another pusher starts from nothing.
	q, err := NewPusher(c, PushConfig{})
	require.NoError(t, err)
	ws, err = q.AppendWaves(ctx, nil)
	require.NoError(t, err)
	require.Len(t, ws, 2)
	assert.Equal(t, 0, ws[0].From)
	assert.Equal(t, 5, ws[0].To)
}
