package limiter

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

func newRedisAdmissionForTest(t *testing.T, c redis.UniversalClient, l Limit, opts ...AdmissionOption) *Admission {
	t.Helper()
	// A generous time budget: CI runs under -race on 2 loaded cores, and
	// these tests check decisions, not latency. FailOpen: no heartbeat.
	opts = append([]AdmissionOption{WithName(uniqueName()), WithTimeout(2 * time.Second), WithFailure(FailOpen)}, opts...)
	a, err := NewRedisAdmission(c, l, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

type admissionStore struct {
	name string
	make func(t *testing.T, l Limit, opts ...AdmissionOption) *Admission
	src  Source
}

// admissionStores are the memory store, Redis and a 3-master cluster.
func admissionStores() []admissionStore {
	return []admissionStore{
		{name: "memory", src: SourceLocal, make: func(t *testing.T, l Limit, opts ...AdmissionOption) *Admission {
			a, err := NewAdmission(l, opts...)
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })
			return a
		}},
		{name: "redis", src: SourceRedis, make: func(t *testing.T, l Limit, opts ...AdmissionOption) *Admission {
			return newRedisAdmissionForTest(t, srv.Client(t), l, opts...)
		}},
		{name: "cluster", src: SourceRedis, make: func(t *testing.T, l Limit, opts ...AdmissionOption) *Admission {
			return newRedisAdmissionForTest(t, cluster.Client(t), l, opts...)
		}},
	}
}

func forEachAdmissionStore(t *testing.T, f func(t *testing.T, s admissionStore)) {
	for _, s := range admissionStores() {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

func mustAdmit(t *testing.T, a *Admission, id string, at time.Time, token string) AdmitDecision {
	t.Helper()
	d, err := a.AdmitAt(context.Background(), id, at, token)
	require.NoError(t, err)
	return d
}

// TestAdmissionBooksAndHonoursSlots walks one small storm by hand: 10/s,
// burst 2, four clients at once.
func TestAdmissionBooksAndHonoursSlots(t *testing.T) {
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(10, 2))
		for _, id := range []string{"a", "b"} {
			d := mustAdmit(t, a, id, t0, "")
			assert.True(t, d.Admitted, id)
			assert.False(t, d.Booked)
			assert.Zero(t, d.RetryAfter)
			assert.True(t, d.RetryAt.IsZero())
			assert.Equal(t, s.src, d.Source)
			assert.Equal(t, PerSecond(10, 2), d.Limit)
		}
		// c and d get the next two slots, 100 ms apart, each with a jitter
		// inside its slot interval (100 ms), rounded up to the ms.
		c := mustAdmit(t, a, "c", t0, "")
		dd := mustAdmit(t, a, "d", t0, "")
		for i, x := range []AdmitDecision{c, dd} {
			slot := time.Duration(i+1) * 100 * time.Millisecond
			assert.False(t, x.Admitted)
			assert.True(t, x.Booked)
			assert.GreaterOrEqual(t, x.RetryAfter, slot)
			assert.Less(t, x.RetryAfter, slot+101*time.Millisecond)
			assert.Zero(t, x.RetryAfter%time.Millisecond, "whole milliseconds")
			assert.Equal(t, t0.Add(x.RetryAfter), x.RetryAt)
		}
		// Coming back early is told the same time again: no new slot.
		early := mustAdmit(t, a, "c", t0.Add(50*time.Millisecond), "")
		assert.False(t, early.Admitted)
		assert.True(t, early.Booked)
		assert.Equal(t, c.RetryAt, early.RetryAt)
		early = mustAdmit(t, a, "c", t0.Add(99*time.Millisecond), "")
		assert.Equal(t, c.RetryAt, early.RetryAt)
		// At the slot itself (before the jitter), and after it: admitted.
		in := mustAdmit(t, a, "c", t0.Add(100*time.Millisecond), "")
		assert.True(t, in.Admitted)
		assert.Zero(t, in.RetryAfter)
		in = mustAdmit(t, a, "d", dd.RetryAt, "")
		assert.True(t, in.Admitted)
		// Honouring a slot spent nothing: the bucket was in debt to 200 ms,
		// so at 250 ms half a token has come back and the next client's
		// slot is 300 ms, 50 ms ahead (not 400 ms, as it would be had
		// c's and d's returns been charged).
		e := mustAdmit(t, a, "e", t0.Add(250*time.Millisecond), "")
		assert.True(t, e.Booked)
		assert.GreaterOrEqual(t, e.RetryAfter, 50*time.Millisecond)
		assert.Less(t, e.RetryAfter, 151*time.Millisecond)
		// A used slot is gone: c is a new session again.
		c2 := mustAdmit(t, a, "c", t0.Add(250*time.Millisecond), "")
		assert.True(t, c2.Booked)
		assert.GreaterOrEqual(t, c2.RetryAfter, 150*time.Millisecond, "queued behind e")
		assert.Zero(t, a.Stats().LossyEvictions)
	})
}

func TestAdmissionSlotGrace(t *testing.T) {
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(10, 1), WithSlotGrace(time.Second))
		mustAdmit(t, a, "a", t0, "")
		b := mustAdmit(t, a, "b", t0, "")
		require.True(t, b.Booked)
		// Within the grace after the slot (100 ms): admitted.
		ok := mustAdmit(t, a, "b", t0.Add(1099*time.Millisecond), "")
		assert.True(t, ok.Admitted)
		c := mustAdmit(t, a, "c", t0.Add(time.Millisecond), "")
		require.True(t, c.Booked)
		// After it: the slot is forgotten; c is a new session (and the
		// bucket has refilled by now, so it is let straight in).
		late := mustAdmit(t, a, "c", t0.Add(1300*time.Millisecond), "")
		assert.True(t, late.Admitted)
		late = mustAdmit(t, a, "d", t0.Add(1300*time.Millisecond), "")
		assert.True(t, late.Booked, "c's late return took the one token")
	})
}

// TestAdmissionHorizon: past the horizon nothing is booked, and the
// deferred are spread over one horizon by cohort and jitter.
func TestAdmissionHorizon(t *testing.T) {
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(10, 1), WithHorizon(time.Second), WithCohorts(4))
		mustAdmit(t, a, "first", t0, "")
		for i := range 10 {
			d := mustAdmit(t, a, "booked-"+string(rune('a'+i)), t0, "")
			require.True(t, d.Booked, i)
			require.LessOrEqual(t, d.RetryAfter, time.Second+101*time.Millisecond)
		}
		var (
			afters   []time.Duration
			byCohort = map[int][]time.Duration{}
		)
		for i := range 200 {
			id := "deferred-" + strings.Repeat("x", i%7) + string(rune('A'+i%50)) + string(rune('a'+i/50))
			d := mustAdmit(t, a, id, t0, "")
			require.False(t, d.Admitted)
			require.False(t, d.Booked, "past the horizon nothing is booked")
			// The next slot is 1.1 s out: 100 ms past the horizon, plus
			// half a horizon, plus a spread over half a horizon.
			require.GreaterOrEqual(t, d.RetryAfter, 600*time.Millisecond)
			require.LessOrEqual(t, d.RetryAfter, 1100*time.Millisecond+time.Millisecond)
			require.GreaterOrEqual(t, d.Cohort, 0)
			require.Less(t, d.Cohort, 4)
			afters = append(afters, d.RetryAfter)
			byCohort[d.Cohort] = append(byCohort[d.Cohort], d.RetryAfter)
		}
		// Deferred clients took nothing: the 11th slot is still the next.
		d := mustAdmit(t, a, "next", t0.Add(99*time.Millisecond), "")
		assert.False(t, d.Booked, "the 11th slot is 1001 ms out at 99 ms")
		d = mustAdmit(t, a, "next", t0.Add(100*time.Millisecond), "")
		assert.True(t, d.Booked, "room again once a slot interval has passed")
		// Cohort c comes back in the c-th quarter of the second half of
		// the horizon.
		require.Len(t, byCohort, 4)
		for c, as := range byCohort {
			for _, x := range as {
				lo := 600*time.Millisecond + time.Duration(c)*125*time.Millisecond
				assert.GreaterOrEqual(t, x, lo, "cohort %d", c)
				assert.LessOrEqual(t, x, lo+126*time.Millisecond, "cohort %d", c)
			}
		}
		// And few are told the same millisecond: jitter spreads them.
		seen := map[time.Duration]int{}
		for _, x := range afters {
			seen[x]++
		}
		assert.Greater(t, len(seen), 150, "200 deferred clients spread over 500 ms")
	})
}

func TestAdmissionResume(t *testing.T) {
	signer, err := NewResumeSigner([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	other, err := NewResumeSigner([]byte("another key, also 32 bytes long!"))
	require.NoError(t, err)
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(1, 1), WithResume(signer, time.Minute))
		first := mustAdmit(t, a, "alice", t0, "")
		require.True(t, first.Admitted)
		require.Len(t, first.ResumeToken, ResumeTokenLen)
		assert.NoError(t, signer.VerifyAt("alice", first.ResumeToken, t0.Add(59*time.Second)))
		// The budget is spent, yet alice resumes, again and again, each
		// time with a fresh token, spending nothing.
		tok := first.ResumeToken
		for i := range 5 {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			d := mustAdmit(t, a, "alice", at, tok)
			require.True(t, d.Admitted, i)
			assert.True(t, d.Resumed)
			assert.Equal(t, SourceLocal, d.Source)
			require.NotEmpty(t, d.ResumeToken)
			tok = d.ResumeToken
		}
		d := mustAdmit(t, a, "bob", t0.Add(999*time.Millisecond), "")
		assert.True(t, d.Booked, "the budget is alice's first session only")
		// Its slot is 1 ms out (plus a jitter within the 1 s slot
		// interval); had the resumes been charged it would be 5 s out.
		assert.Less(t, d.RetryAfter, time.Second+2*time.Millisecond)
		// Bad tokens make a new session, never an error.
		bobTok, err := signer.IssueAt("bob", t0, time.Minute)
		require.NoError(t, err)
		foreign, err := other.IssueAt("carol", t0, time.Minute)
		require.NoError(t, err)
		expired, err := signer.IssueAt("carol", t0, time.Second)
		require.NoError(t, err)
		tampered := []byte(first.ResumeToken)
		tampered[20] ^= 1
		for name, bad := range map[string]string{
			"wrong client":    bobTok,
			"foreign key":     foreign,
			"expired":         expired,
			"tampered":        string(tampered),
			"garbage":         "not a token",
			"oversized":       strings.Repeat("A", 1<<20),
			"empty-ish":       "=",
			"right length, ?": strings.Repeat("?", ResumeTokenLen),
		} {
			d := mustAdmit(t, a, "carol", t0.Add(10*time.Second), bad)
			assert.False(t, d.Resumed, name)
			assert.True(t, d.Admitted || d.Booked, name)
		}
	})
}

func TestAdmissionBadInput(t *testing.T) {
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(10, 10))
		ctx := context.Background()
		_, err := a.AdmitAt(ctx, "", t0, "")
		assert.ErrorIs(t, err, ErrInvalidKey)
		assert.ErrorContains(t, err, "empty client ID")
		_, err = a.Admit(ctx, strings.Repeat("x", MaxClientIDLen+1), "")
		assert.ErrorIs(t, err, ErrInvalidKey)
		assert.ErrorContains(t, err, "MaxClientIDLen")
		d, err := a.AdmitAt(ctx, strings.Repeat("x", MaxClientIDLen), t0, "")
		require.NoError(t, err)
		assert.True(t, d.Admitted)
		// Keys that could confuse key building are ordinary IDs.
		for _, id := range []string{"{a}", "a:b", "\x00", " ", "ключ", strings.Repeat("{", 300)} {
			d, err := a.AdmitAt(ctx, id, t0, "")
			require.NoError(t, err, "%q", id)
			assert.True(t, d.Admitted)
		}
		require.NoError(t, a.Close())
		_, err = a.AdmitAt(ctx, "k", t0, "")
		assert.ErrorIs(t, err, ErrClosed)
		assert.NoError(t, a.Close(), "Close is idempotent")
	})
}

func TestAdmissionConfigErrors(t *testing.T) {
	signer, err := NewResumeSigner([]byte("0123456789abcdef"))
	require.NoError(t, err)
	ok := PerSecond(10, 10)
	cases := []struct {
		name  string
		l     Limit
		opts  []AdmissionOption
		field string
	}{
		{"rate 0", Limit{Rate: 0, Burst: 1}, nil, "Limit.Rate"},
		{"rate < 0", Limit{Rate: -5, Burst: 1}, nil, "Limit.Rate"},
		{"burst 0", Limit{Rate: 1}, nil, "Limit.Burst"},
		{"horizon 0", ok, []AdmissionOption{WithHorizon(0)}, "WithHorizon"},
		{"horizon < 0", ok, []AdmissionOption{WithHorizon(-time.Second)}, "WithHorizon"},
		{"grace < 0", ok, []AdmissionOption{WithSlotGrace(-time.Second)}, "WithSlotGrace"},
		{"jitter < 0", ok, []AdmissionOption{WithJitter(-time.Millisecond)}, "WithJitter"},
		{"jitter > grace/2", ok, []AdmissionOption{WithSlotGrace(time.Second), WithJitter(600 * time.Millisecond)}, "WithJitter"},
		{"cohorts 0", ok, []AdmissionOption{WithCohorts(0)}, "WithCohorts"},
		{"cohorts too many", ok, []AdmissionOption{WithCohorts(MaxCohorts + 1)}, "WithCohorts"},
		{"resume nil", ok, []AdmissionOption{WithResume(nil, time.Minute)}, "WithResume"},
		{"resume ttl 0", ok, []AdmissionOption{WithResume(signer, 0)}, "WithResume"},
		{"nil option", ok, []AdmissionOption{nil}, "nil AdmissionOption"},
		{"zero Option", ok, []AdmissionOption{Option{}}, "zero Option"},
		{"bad backend option", ok, []AdmissionOption{WithMaxKeys(0)}, "WithMaxKeys"},
		{"redis-only option", ok, []AdmissionOption{WithTimeout(time.Second)}, "WithTimeout does not apply to NewAdmission"},
		{"clock nil", ok, []AdmissionOption{WithClock(nil)}, "WithClock"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := NewAdmission(c.l, c.opts...)
			require.Error(t, err)
			assert.Nil(t, a)
			assert.ErrorContains(t, err, c.field)
			if !strings.HasPrefix(c.field, "Limit.") {
				assert.ErrorIs(t, err, ErrInvalidOption)
			} else {
				assert.ErrorIs(t, err, ErrInvalidLimit)
			}
		})
	}
	c := srv.Client(t)
	_, err = NewRedisAdmission(c, ok, WithMaxKeys(10))
	assert.ErrorContains(t, err, "WithMaxKeys does not apply to NewRedisAdmission")
	_, err = NewRedisAdmission(nil, ok)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewRedisAdmission(c, ok, WithName("a{b}"))
	assert.ErrorContains(t, err, "WithName")
	_, err = NewRedisAdmission(c, ok, WithHorizon(-1))
	assert.ErrorContains(t, err, "WithHorizon")
	opts := srv.Options()
	opts.ContextTimeoutEnabled = false
	nc := redis.NewClient(opts)
	defer nc.Close()
	_, err = NewRedisAdmission(nc, ok)
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
}

// TestAdmissionSameClientConcurrently: one client's concurrent first
// attempts book one slot between them, not one each.
func TestAdmissionSameClientConcurrently(t *testing.T) {
	forEachAdmissionStore(t, func(t *testing.T, s admissionStore) {
		a := s.make(t, PerSecond(10, 1))
		mustAdmit(t, a, "first", t0, "")
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ats = map[time.Time]int{}
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := a.AdmitAt(context.Background(), "dup", t0, "")
				if err == nil && d.Booked {
					mu.Lock()
					ats[d.RetryAt]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, ats, 1, "one slot, told eight times")
		for _, n := range ats {
			assert.Equal(t, 8, n)
		}
		d := mustAdmit(t, a, "next", t0, "")
		assert.GreaterOrEqual(t, d.RetryAfter, 200*time.Millisecond, "the next slot is the second, not the ninth")
		assert.Less(t, d.RetryAfter, 301*time.Millisecond)
	})
}

func TestAdmissionOneRoundTrip(t *testing.T) {
	c := srv.Client(t)
	a := newRedisAdmissionForTest(t, c, PerSecond(100, 1))
	ctx := context.Background()
	_, err := a.Admit(ctx, "warm", "") // loads the script
	require.NoError(t, err)
	h := &countingHook{}
	c.AddHook(h)
	booked := 0
	for i := range 40 {
		d, err := a.Admit(ctx, "c"+string(rune('a'+i%20)), "")
		require.NoError(t, err)
		require.Equal(t, SourceRedis, d.Source)
		if d.Booked {
			booked++
		}
	}
	assert.Positive(t, booked)
	assert.Equal(t, int64(40), h.cmds.Load(), "exactly one command (EVALSHA) per Admit, booked or not")
	assert.Zero(t, h.pipes.Load())
}

// TestAdmissionRedisKeys: the budget and every booked slot live under one
// hash tag (one cluster slot), and a slot key expires after its grace.
func TestAdmissionRedisKeys(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	// 2/s: the second Admit finds the bucket empty even if it comes up to
	// half a second after the first on a loaded machine.
	a := newRedisAdmissionForTest(t, c, PerSecond(2, 1), WithName(name), WithSlotGrace(50*time.Millisecond))
	ctx := context.Background()
	mustAdmit(t, a, "x", time.Now(), "")
	d, err := a.Admit(ctx, "slow{client}", "") // Redis TIME: no clock injected
	require.NoError(t, err)
	require.True(t, d.Booked)
	keys, err := c.Keys(ctx, "herdcap:"+name+":*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for _, k := range keys {
		assert.True(t, strings.HasPrefix(k, "herdcap:"+name+":{a:"+name+"}"), k)
	}
	require.Eventually(t, func() bool {
		n, err := c.Exists(ctx, keys...).Result()
		return err == nil && n == 0
	}, 5*time.Second, 10*time.Millisecond, "slot and bucket keys expire")
}

func TestAdmissionUnexpectedReply(t *testing.T) {
	c := srv.Client(t)
	name := uniqueName()
	a := newRedisAdmissionForTest(t, c, PerSecond(1, 1), WithName(name))
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, "herdcap:"+name+":{a:"+name+"}:k:taken", "x", "y").Err())
	_, err := a.AdmitAt(ctx, "taken", t0, "")
	require.ErrorIs(t, err, ErrUnexpectedReply)
	assert.ErrorContains(t, err, "WRONGTYPE")
	d, err := a.AdmitAt(ctx, "fine", t0, "")
	require.NoError(t, err)
	assert.Equal(t, SourceRedis, d.Source, "a bad reply is not an outage")
	for _, v := range []any{nil, "x", []any{int64(1)}, []any{int64(9), int64(0)}, []any{int64(1), int64(-1)}, []any{int64(1), "x"}} {
		_, _, err := parseAdmitReply(v)
		assert.ErrorIs(t, err, ErrUnexpectedReply, "%v", v)
	}
}

func TestAdmissionRamp(t *testing.T) {
	clk := fakeClockAt(t0)
	a, err := NewAdmission(PerSecond(10, 10), WithClock(clk), WithRamp(10*time.Second))
	require.NoError(t, err)
	require.NoError(t, a.SetLimit(PerSecond(110, 110)))
	assert.Equal(t, PerSecond(10, 10), a.Limit())
	d := mustAdmit(t, a, "k", t0.Add(5*time.Second), "")
	assert.InDelta(t, 60, d.Limit.Rate, 1e-9)
	clk.Set(t0.Add(time.Minute))
	assert.Equal(t, PerSecond(110, 110), a.Limit())
	assert.ErrorIs(t, a.SetLimit(Limit{}), ErrInvalidLimit)
	// Admit reads the injected clock.
	d, err = a.Admit(context.Background(), "k2", "")
	require.NoError(t, err)
	assert.Equal(t, PerSecond(110, 110), d.Limit)
}

func TestAdmissionSaltReshuffles(t *testing.T) {
	a, err := NewAdmission(PerSecond(1, 1), WithCohorts(10), WithSalt("storm-1"))
	require.NoError(t, err)
	first := mustAdmit(t, a, "alice", t0, "")
	assert.Equal(t, Cohort("storm-1", "alice", 10), first.Cohort)
	moved := 0
	for i := range 100 {
		id := "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		a.SetSalt("storm-1")
		x := mustAdmit(t, a, id, t0, "").Cohort
		a.SetSalt("storm-2")
		y := mustAdmit(t, a, id, t0, "").Cohort
		assert.Equal(t, Cohort("storm-2", id, 10), y)
		if x != y {
			moved++
		}
	}
	assert.Greater(t, moved, 70, "a new salt reshuffles ~90%% of clients")
}

func TestAdmissionMemoryTableIsBounded(t *testing.T) {
	a, err := NewAdmission(PerSecond(1, 1), WithMaxKeys(64), WithHorizon(time.Hour))
	require.NoError(t, err)
	for i := range 1000 {
		mustAdmit(t, a, "flood-"+strings.Repeat("z", i%9)+string(rune(0x100+i)), t0, "")
	}
	st := a.Stats()
	assert.LessOrEqual(t, st.Slots, st.Capacity)
	assert.Equal(t, 64, st.Capacity)
	assert.Positive(t, st.LossyEvictions, "a table too small for the herd loses slots, and says so")

	// By default the table has room for every slot that can be live:
	// 10,000/s × (60 s horizon + 10 s grace), plus a quarter.
	big, err := NewAdmission(PerSecond(10_000, 1))
	require.NoError(t, err)
	assert.InDelta(t, 875_000, big.Stats().Capacity, 64)
	small, err := NewAdmission(PerSecond(1, 1))
	require.NoError(t, err)
	assert.InDelta(t, DefaultMaxKeys, small.Stats().Capacity, 64)
}

// TestAdmissionFailurePolicies kills a private Redis under each policy.
func TestAdmissionFailurePolicies(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	mk := func(p FailurePolicy) *Admission {
		a, err := NewRedisAdmission(c, PerSecond(10, 2), WithName(uniqueName()), WithFailure(p),
			WithTimeout(50*time.Millisecond), WithBreaker(1, time.Hour))
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		return a
	}
	local, open, closed := mk(FailLocal), mk(FailOpen), mk(FailClosed)
	ctx := context.Background()
	d, err := local.AdmitAt(ctx, "warm", t0, "")
	require.NoError(t, err)
	require.Equal(t, SourceRedis, d.Source)
	s.Kill(t)

	// FailLocal: the memory store on this node's share (one node: all),
	// slots and all.
	d, err = local.AdmitAt(ctx, "a", t0, "")
	require.NoError(t, err)
	assert.Equal(t, SourceFallback, d.Source)
	assert.True(t, d.Admitted)
	mustAdmit(t, local, "b", t0, "")
	d = mustAdmit(t, local, "c", t0, "")
	assert.True(t, d.Booked)
	assert.Equal(t, SourceFallback, d.Source)
	in := mustAdmit(t, local, "c", d.RetryAt, "")
	assert.True(t, in.Admitted)

	d, err = open.AdmitAt(ctx, "a", t0, "")
	require.NoError(t, err)
	assert.True(t, d.Admitted)
	assert.Equal(t, SourceFallback, d.Source)

	seen := map[time.Duration]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		d, err = closed.AdmitAt(ctx, id, t0, "")
		require.ErrorIs(t, err, ErrUnavailable)
		assert.False(t, d.Admitted)
		assert.False(t, d.Booked)
		assert.Equal(t, SourceFallback, d.Source)
		assert.GreaterOrEqual(t, d.RetryAfter, time.Hour, "not before the breaker lets a probe through")
		assert.LessOrEqual(t, d.RetryAfter, 2*time.Hour)
		seen[d.RetryAfter] = true
	}
	assert.Greater(t, len(seen), 4, "refusals are spread, not synchronized")

	// A cancelled caller is not an outage.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = open.AdmitAt(cctx, "z", t0, "")
	assert.ErrorIs(t, err, context.Canceled)
}

// TestAdmissionFailLocalShare: with two live nodes, a node that loses Redis
// admits on half the limit.
func TestAdmissionFailLocalShare(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	var nodes []*Admission
	for _, id := range []string{"n1", "n2"} {
		a, err := NewRedisAdmission(s.Client(t), PerSecond(100, 100), WithName(name), WithNodeID(id),
			WithTimeout(50*time.Millisecond), WithBreaker(1, time.Hour), WithHeartbeat(20*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		nodes = append(nodes, a)
	}
	require.Eventually(t, func() bool { return nodes[0].r.live.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	s.Kill(t)
	admitted := 0
	for i := range 100 {
		d := mustAdmit(t, nodes[0], "c"+string(rune(0x100+i)), t0, "")
		require.Equal(t, SourceFallback, d.Source)
		if d.Admitted {
			admitted++
		}
	}
	assert.Equal(t, 50, admitted, "half the burst: the limit divided by 2 live nodes")
}
