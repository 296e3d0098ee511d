package admission

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var nameSeq atomic.Int64

// uniqueName returns a fresh Redis.Name.
func uniqueName() string { return fmt.Sprintf("t%d", nameSeq.Add(1)) }

// subject is a gate under test with the clock it reads.
type subject struct {
	*Gate
	clk *fakeclock.Clock
}

// withClock fills cfg.Clock with a fake clock at t0 unless it has one
// (which must then be a *fakeclock.Clock), and returns it.
func withClock(cfg *Config) *fakeclock.Clock {
	if cfg.Clock == nil {
		cfg.Clock = fakeclock.New(t0)
	}
	return cfg.Clock.(*fakeclock.Clock)
}

func newMemoryForTest(t *testing.T, l limiter.Limit, cfg Config) subject {
	t.Helper()
	clk := withClock(&cfg)
	g, err := New(l, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return subject{g, clk}
}

// newSharedForTest returns a shared gate on c with a fresh name, a generous
// Redis.Timeout (CI runs under -race on 2 loaded cores, and these tests
// check decisions, not latency) and FailOpen (no heartbeat), unless r sets
// them.
func newSharedForTest(t *testing.T, c redis.UniversalClient, l limiter.Limit, r fleet.Redis, cfg Config) subject {
	t.Helper()
	clk := withClock(&cfg)
	r.Client = c
	if r.Name == "" {
		r.Name = uniqueName()
	}
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Second
	}
	g, err := NewShared(r, l, SharedConfig{Config: cfg, Failure: fleet.FailOpen})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return subject{g, clk}
}

type store struct {
	name string
	make func(t *testing.T, l limiter.Limit, cfg Config) subject
	via  limiter.Via
}

// stores are the memory store, Redis and a 3-master cluster.
func stores() []store {
	return []store{
		{name: "memory", via: limiter.ViaLocal, make: newMemoryForTest},
		{name: "redis", via: limiter.ViaRedis, make: func(t *testing.T, l limiter.Limit, cfg Config) subject {
			return newSharedForTest(t, srv.Client(t), l, fleet.Redis{}, cfg)
		}},
		{name: "cluster", via: limiter.ViaRedis, make: func(t *testing.T, l limiter.Limit, cfg Config) subject {
			return newSharedForTest(t, cluster.Client(t), l, fleet.Redis{}, cfg)
		}},
	}
}

func forEachStore(t *testing.T, f func(t *testing.T, s store)) {
	for _, s := range stores() {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

// at moves the gate's clock to at and admits id with tk.
func (g subject) at(t *testing.T, id string, at time.Time, tk string) Decision {
	t.Helper()
	g.clk.Set(at)
	d, err := g.Admit(context.Background(), id, tk)
	require.NoError(t, err)
	return d
}

// TestAdmissionBooksAndHonoursSlots walks one small storm by hand: 10/s,
// burst 2, four clients at once.
func TestAdmissionBooksAndHonoursSlots(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(10, 2), Config{})
		for _, id := range []string{"a", "b"} {
			d := a.at(t, id, t0, "")
			assert.True(t, d.Admitted, id)
			assert.False(t, d.Booked)
			assert.Zero(t, d.RetryAfter)
			assert.True(t, d.RetryAt.IsZero())
			assert.Equal(t, s.via, d.Via)
			assert.Equal(t, limiter.PerSecond(10, 2), d.Limit)
		}
		// c and d get the next two slots, 100 ms apart, each with a jitter
		// inside its slot interval (100 ms), rounded up to the ms.
		c := a.at(t, "c", t0, "")
		dd := a.at(t, "d", t0, "")
		for i, x := range []Decision{c, dd} {
			slot := time.Duration(i+1) * 100 * time.Millisecond
			assert.False(t, x.Admitted)
			assert.True(t, x.Booked)
			assert.GreaterOrEqual(t, x.RetryAfter, slot)
			assert.Less(t, x.RetryAfter, slot+101*time.Millisecond)
			assert.Zero(t, x.RetryAfter%time.Millisecond, "whole milliseconds")
			assert.Equal(t, t0.Add(x.RetryAfter), x.RetryAt)
		}
		// Coming back early is told the same time again: no new slot.
		early := a.at(t, "c", t0.Add(50*time.Millisecond), "")
		assert.False(t, early.Admitted)
		assert.True(t, early.Booked)
		assert.Equal(t, c.RetryAt, early.RetryAt)
		early = a.at(t, "c", t0.Add(99*time.Millisecond), "")
		assert.Equal(t, c.RetryAt, early.RetryAt)
		// At the slot itself (before the jitter), and after it: admitted.
		in := a.at(t, "c", t0.Add(100*time.Millisecond), "")
		assert.True(t, in.Admitted)
		assert.Zero(t, in.RetryAfter)
		in = a.at(t, "d", dd.RetryAt, "")
		assert.True(t, in.Admitted)
		// Honouring a slot spent nothing: the bucket was in debt to 200 ms,
		// so at 250 ms half a token has come back and the next client's
		// slot is 300 ms, 50 ms ahead (not 400 ms, as it would be had
		// c's and d's returns been charged).
		e := a.at(t, "e", t0.Add(250*time.Millisecond), "")
		assert.True(t, e.Booked)
		assert.GreaterOrEqual(t, e.RetryAfter, 50*time.Millisecond)
		assert.Less(t, e.RetryAfter, 151*time.Millisecond)
		// A used slot is gone: c is a new session again.
		c2 := a.at(t, "c", t0.Add(250*time.Millisecond), "")
		assert.True(t, c2.Booked)
		assert.GreaterOrEqual(t, c2.RetryAfter, 150*time.Millisecond, "queued behind e")
		assert.Zero(t, a.Stats().LossyEvictions)
	})
}

func TestAdmissionSlotGrace(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(10, 1), Config{SlotGrace: time.Second})
		a.at(t, "a", t0, "")
		b := a.at(t, "b", t0, "")
		require.True(t, b.Booked)
		// Within the grace after the slot (100 ms): admitted.
		ok := a.at(t, "b", t0.Add(1099*time.Millisecond), "")
		assert.True(t, ok.Admitted)
		c := a.at(t, "c", t0.Add(time.Millisecond), "")
		require.True(t, c.Booked)
		// After it: the slot is forgotten; c is a new session (and the
		// bucket has refilled by now, so it is let straight in).
		late := a.at(t, "c", t0.Add(1300*time.Millisecond), "")
		assert.True(t, late.Admitted)
		late = a.at(t, "d", t0.Add(1300*time.Millisecond), "")
		assert.True(t, late.Booked, "c's late return took the one token")
	})
}

// TestAdmissionHorizon: past the horizon nothing is booked, and the
// deferred are spread over one horizon by cohort and jitter.
func TestAdmissionHorizon(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(10, 1), Config{Horizon: time.Second, Cohorts: 4})
		a.at(t, "first", t0, "")
		for i := range 10 {
			d := a.at(t, "booked-"+string(rune('a'+i)), t0, "")
			require.True(t, d.Booked, i)
			require.LessOrEqual(t, d.RetryAfter, time.Second+101*time.Millisecond)
		}
		var (
			afters   []time.Duration
			byCohort = map[int][]time.Duration{}
		)
		for i := range 200 {
			id := "deferred-" + strings.Repeat("x", i%7) + string(rune('A'+i%50)) + string(rune('a'+i/50))
			d := a.at(t, id, t0, "")
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
		d := a.at(t, "next", t0.Add(99*time.Millisecond), "")
		assert.False(t, d.Booked, "the 11th slot is 1001 ms out at 99 ms")
		d = a.at(t, "next", t0.Add(100*time.Millisecond), "")
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

func TestAdmissionTickets(t *testing.T) {
	key, otherKey := []byte("0123456789abcdef0123456789abcdef"), []byte("another key, also 32 bytes long!")
	signer, err := ticket.New([][]byte{key}, "keys")
	require.NoError(t, err)
	other, err := ticket.New([][]byte{otherKey}, "keys")
	require.NoError(t, err)
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(1, 1), Config{TicketKeys: [][]byte{key}, TicketTTL: time.Minute})
		first := a.at(t, "alice", t0, "")
		require.True(t, first.Admitted)
		require.Len(t, first.Ticket, ticket.Len)
		assert.NoError(t, signer.Verify("alice", first.Ticket, t0.Add(59*time.Second)))
		assert.Error(t, signer.Verify("alice", first.Ticket, t0.Add(time.Minute)), "TicketTTL")
		// The budget is spent, yet alice rejoins, again and again, each
		// time with a fresh ticket, spending nothing.
		tk := first.Ticket
		for i := range 5 {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			d := a.at(t, "alice", at, tk)
			require.True(t, d.Admitted, i)
			assert.True(t, d.Rejoined)
			assert.Equal(t, limiter.ViaLocal, d.Via)
			require.NotEmpty(t, d.Ticket)
			tk = d.Ticket
		}
		d := a.at(t, "bob", t0.Add(999*time.Millisecond), "")
		assert.True(t, d.Booked, "the budget is alice's first session only")
		// Its slot is 1 ms out (plus a jitter within the 1 s slot
		// interval); had the rejoins been charged it would be 5 s out.
		assert.Less(t, d.RetryAfter, time.Second+2*time.Millisecond)
		// Bad tickets make a new session, never an error.
		bobTk, err := signer.Issue("bob", t0, time.Minute)
		require.NoError(t, err)
		foreign, err := other.Issue("carol", t0, time.Minute)
		require.NoError(t, err)
		expired, err := signer.Issue("carol", t0, time.Second)
		require.NoError(t, err)
		tampered := []byte(first.Ticket)
		tampered[20] ^= 1
		for name, bad := range map[string]string{
			"wrong client":    bobTk,
			"foreign key":     foreign,
			"expired":         expired,
			"tampered":        string(tampered),
			"garbage":         "not a ticket",
			"oversized":       strings.Repeat("A", 1<<20),
			"empty-ish":       "=",
			"right length, ?": strings.Repeat("?", ticket.Len),
		} {
			d := a.at(t, "carol", t0.Add(10*time.Second), bad)
			assert.False(t, d.Rejoined, name)
			assert.True(t, d.Admitted || d.Booked, name)
		}
		// Rotation: a gate signing with a new key still lets in the
		// holders of tickets from the old one.
		b := s.make(t, limiter.PerSecond(1, 1), Config{TicketKeys: [][]byte{otherKey, key}})
		d = b.at(t, "alice", t0.Add(20*time.Second), tk)
		assert.True(t, d.Rejoined, "an old key still verifies")
		assert.NoError(t, other.Verify("alice", d.Ticket, t0.Add(20*time.Second)), "the new key signs")
		assert.Error(t, signer.Verify("alice", d.Ticket, t0.Add(20*time.Second)))
		// A gate without keys ignores tickets and issues none.
		none := s.make(t, limiter.PerSecond(1, 1), Config{})
		d = none.at(t, "alice", t0, tk)
		assert.True(t, d.Admitted)
		assert.False(t, d.Rejoined)
		assert.Empty(t, d.Ticket)
	})
}

func TestMaxClientIDLenIsTheTickets(t *testing.T) {
	assert.Equal(t, ticket.MaxClientIDLen, MaxClientIDLen, "a gate issues tickets to every ID it accepts")
	assert.Equal(t, wire.MaxClientIDLen, MaxClientIDLen, "a gate accepts every ID the transports carry, and no more")
	assert.Equal(t, 256, MaxClientIDLen)
}

func TestAdmissionBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(10, 10), Config{})
		ctx := context.Background()
		_, err := a.Admit(ctx, "", "")
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
		assert.ErrorContains(t, err, "empty client ID")
		_, err = a.Admit(ctx, strings.Repeat("x", MaxClientIDLen+1), "")
		assert.ErrorIs(t, err, limiter.ErrInvalidRequest)
		assert.ErrorContains(t, err, "MaxClientIDLen")
		d := a.at(t, strings.Repeat("x", MaxClientIDLen), t0, "")
		assert.True(t, d.Admitted)
		// Keys that could confuse key building are ordinary IDs.
		for _, id := range []string{"{a}", "a:b", "\x00", " ", "ключ", strings.Repeat("{", MaxClientIDLen)} {
			d, err := a.Admit(ctx, id, "")
			require.NoError(t, err, "%q", id)
			assert.True(t, d.Admitted)
		}
		require.NoError(t, a.Close())
		_, err = a.Admit(ctx, "k", "")
		assert.ErrorIs(t, err, limiter.ErrClosed)
		assert.NoError(t, a.Close(), "Close is idempotent")
	})
}

func TestAdmissionConfigErrors(t *testing.T) {
	ok := limiter.PerSecond(10, 10)
	cases := []struct {
		name  string
		l     limiter.Limit
		cfg   Config
		field string
	}{
		{"rate 0", limiter.Limit{Rate: 0, Burst: 1}, Config{}, "Limit.Rate"},
		{"rate < 0", limiter.Limit{Rate: -5, Burst: 1}, Config{}, "Limit.Rate"},
		{"burst 0", limiter.Limit{Rate: 1}, Config{}, "Limit.Burst"},
		{"horizon < 0", ok, Config{Horizon: -time.Second}, "Config.Horizon must be >= 0"},
		{"grace < 0", ok, Config{SlotGrace: -time.Second}, "Config.SlotGrace must be >= 0"},
		{"jitter < 0", ok, Config{Jitter: -time.Millisecond}, "Config.Jitter must be >= 0"},
		{"jitter > grace/2", ok, Config{SlotGrace: time.Second, Jitter: 600 * time.Millisecond}, "Config.Jitter (600ms) must be at most half of Config.SlotGrace (1s)"},
		{"jitter > default grace/2", ok, Config{Jitter: 6 * time.Second}, "Config.Jitter"},
		{"cohorts < 0", ok, Config{Cohorts: -1}, "Config.Cohorts"},
		{"cohorts too many", ok, Config{Cohorts: limiter.MaxCohorts + 1}, "Config.Cohorts"},
		{"ticket key short", ok, Config{TicketKeys: [][]byte{[]byte("short")}}, "Config.TicketKeys[0] is 5 bytes"},
		{"ticket key second", ok, Config{TicketKeys: [][]byte{make([]byte, 32), make([]byte, 2000)}}, "Config.TicketKeys[1] is 2000 bytes"},
		{"ticket keys too many", ok, Config{TicketKeys: make([][]byte, 17)}, "Config.TicketKeys: at most 16 keys"},
		{"ticket ttl", ok, Config{TicketTTL: time.Microsecond}, "Config.TicketTTL"},
		{"ticket ttl long", ok, Config{TicketTTL: 400 * 24 * time.Hour}, "Config.TicketTTL"},
		{"max keys", ok, Config{Config: limiter.Config{MaxKeys: -1}}, "Config.MaxKeys must be >= 0"},
		{"ramp", ok, Config{Config: limiter.Config{Ramp: -time.Second}}, "Config.Ramp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.l, c.cfg)
			require.Error(t, err)
			assert.Nil(t, a)
			assert.ErrorContains(t, err, c.field)
			if !strings.HasPrefix(c.field, "Limit.") {
				assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
			} else {
				assert.ErrorIs(t, err, limiter.ErrInvalidLimit)
			}
		})
	}
	c := srv.Client(t)
	_, err := NewShared(fleet.Redis{}, ok, SharedConfig{})
	assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.ErrorContains(t, err, "Redis.Client is nil")
	_, err = NewShared(fleet.Redis{Client: c, Name: "a{b}"}, ok, SharedConfig{})
	assert.ErrorContains(t, err, "Redis.Name")
	_, err = NewShared(fleet.Redis{Client: c}, ok, SharedConfig{Config: Config{Horizon: -1}})
	assert.ErrorContains(t, err, "Config.Horizon")
	_, err = NewShared(fleet.Redis{Client: c}, ok, SharedConfig{Failure: 5})
	assert.ErrorContains(t, err, "SharedConfig.Failure is unknown")
	// Only FailLocal runs the heartbeat: elsewhere its fields are rejected
	// rather than ignored.
	_, err = NewShared(fleet.Redis{Client: c, Node: "n1"}, ok, SharedConfig{Failure: fleet.FailClosed})
	assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.ErrorContains(t, err, `Redis.Node must be empty, got "n1": only FailLocal runs the live-node heartbeat they configure, and SharedConfig.Failure is FailClosed`)
	_, err = NewShared(fleet.Redis{Client: c, Heartbeat: time.Second}, ok, SharedConfig{Failure: fleet.FailOpen})
	assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
	assert.ErrorContains(t, err, "Redis.Heartbeat must be 0, got 1s")
	opts := srv.Options()
	opts.ContextTimeoutEnabled = false
	nc := redis.NewClient(opts)
	defer nc.Close()
	_, err = NewShared(fleet.Redis{Client: nc}, ok, SharedConfig{})
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
}

// TestAdmissionSameClientConcurrently: one client's concurrent first
// attempts book one slot between them, not one each.
func TestAdmissionSameClientConcurrently(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		a := s.make(t, limiter.PerSecond(10, 1), Config{})
		a.at(t, "first", t0, "")
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ats = map[time.Time]int{}
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := a.Admit(context.Background(), "dup", "")
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
		d := a.at(t, "next", t0, "")
		assert.GreaterOrEqual(t, d.RetryAfter, 200*time.Millisecond, "the next slot is the second, not the ninth")
		assert.Less(t, d.RetryAfter, 301*time.Millisecond)
	})
}

func TestAdmissionOneRoundTrip(t *testing.T) {
	c := srv.Client(t)
	a := newSharedForTest(t, c, limiter.PerSecond(100, 1), fleet.Redis{}, Config{})
	ctx := context.Background()
	_, err := a.Admit(ctx, "warm", "") // loads the script
	require.NoError(t, err)
	h := &countingHook{}
	c.AddHook(h)
	booked := 0
	for i := range 40 {
		d, err := a.Admit(ctx, "c"+string(rune('a'+i%20)), "")
		require.NoError(t, err)
		require.Equal(t, limiter.ViaRedis, d.Via)
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
	a, err := NewShared(fleet.Redis{Client: c, Name: name, Timeout: 2 * time.Second}, limiter.PerSecond(2, 1),
		SharedConfig{Config: Config{SlotGrace: 50 * time.Millisecond}, Failure: fleet.FailOpen}) // Redis TIME: no clock injected
	require.NoError(t, err)
	defer a.Close()
	ctx := context.Background()
	_, err = a.Admit(ctx, "x", "")
	require.NoError(t, err)
	d, err := a.Admit(ctx, "slow{client}", "")
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
	a := newSharedForTest(t, c, limiter.PerSecond(1, 1), fleet.Redis{Name: name}, Config{})
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, "herdcap:"+name+":{a:"+name+"}:k:taken", "x", "y").Err())
	_, err := a.Admit(ctx, "taken", "")
	require.ErrorIs(t, err, fleet.ErrUnexpectedReply)
	assert.ErrorContains(t, err, "WRONGTYPE")
	d, err := a.Admit(ctx, "fine", "")
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaRedis, d.Via, "a bad reply is not an outage")
	for _, v := range []any{nil, "x", []any{int64(1)}, []any{int64(9), int64(0)}, []any{int64(1), int64(-1)}, []any{int64(1), "x"}} {
		_, _, err := parseAdmitReply(v)
		assert.ErrorIs(t, err, fleet.ErrUnexpectedReply, "%v", v)
	}
}

func TestAdmissionRamp(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(10, 10), Config{Config: limiter.Config{Ramp: 10 * time.Second}})
	require.NoError(t, a.SetLimit(limiter.PerSecond(110, 110)))
	assert.Equal(t, limiter.PerSecond(10, 10), a.Limit())
	d := a.at(t, "k", t0.Add(5*time.Second), "")
	assert.InDelta(t, 60, d.Limit.Rate, 1e-9)
	a.clk.Set(t0.Add(time.Minute))
	assert.Equal(t, limiter.PerSecond(110, 110), a.Limit())
	assert.ErrorIs(t, a.SetLimit(limiter.Limit{}), limiter.ErrInvalidLimit)
	// Admit reads the injected clock.
	d, err := a.Admit(context.Background(), "k2", "")
	require.NoError(t, err)
	assert.Equal(t, limiter.PerSecond(110, 110), d.Limit)
}

func TestAdmissionSaltReshuffles(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(1, 1), Config{Cohorts: 10, Salt: "storm-1"})
	first := a.at(t, "alice", t0, "")
	assert.Equal(t, limiter.Cohort("storm-1", "alice", 10), first.Cohort)
	moved := 0
	for i := range 100 {
		id := "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		a.SetSalt("storm-1")
		x := a.at(t, id, t0, "").Cohort
		a.SetSalt("storm-2")
		y := a.at(t, id, t0, "").Cohort
		assert.Equal(t, limiter.Cohort("storm-2", id, 10), y)
		if x != y {
			moved++
		}
	}
	assert.Greater(t, moved, 70, "a new salt reshuffles ~90%% of clients")
}

func TestAdmissionMemoryTableIsBounded(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(1, 1), Config{Config: limiter.Config{MaxKeys: 64}, Horizon: time.Hour})
	for i := range 1000 {
		a.at(t, "flood-"+strings.Repeat("z", i%9)+string(rune(0x100+i)), t0, "")
	}
	st := a.Stats()
	assert.LessOrEqual(t, st.Slots, st.Capacity)
	assert.Equal(t, 64, st.Capacity)
	assert.Positive(t, st.LossyEvictions, "a table too small for the herd loses slots, and says so")

	// By default the table has room for every slot that can be live:
	// 10,000/s × (60 s horizon + 10 s grace), plus a quarter.
	big, err := New(limiter.PerSecond(10_000, 1), Config{})
	require.NoError(t, err)
	assert.InDelta(t, 875_000, big.Stats().Capacity, 64)
	small, err := New(limiter.PerSecond(1, 1), Config{})
	require.NoError(t, err)
	assert.InDelta(t, 100_000, small.Stats().Capacity, 64)
}

// TestAdmissionFailurePolicies kills a private Redis under each policy.
func TestAdmissionFailurePolicies(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	clk := fakeclock.New(t0)
	mk := func(p fleet.FailurePolicy) subject {
		a, err := NewShared(fleet.Redis{Client: c, Name: uniqueName(), Timeout: 50 * time.Millisecond, BreakerFailures: 1, BreakerOpen: time.Hour},
			limiter.PerSecond(10, 2), SharedConfig{Config: Config{Config: limiter.Config{Clock: clk}}, Failure: p})
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		return subject{a, clk}
	}
	local, open, closed := mk(fleet.FailLocal), mk(fleet.FailOpen), mk(fleet.FailClosed)
	ctx := context.Background()
	d := local.at(t, "warm", t0, "")
	require.Equal(t, limiter.ViaRedis, d.Via)
	s.Kill(t)

	// FailLocal: the memory store on this node's share (one node: all),
	// slots and all.
	d = local.at(t, "a", t0, "")
	assert.Equal(t, limiter.ViaFallback, d.Via)
	assert.True(t, d.Admitted)
	local.at(t, "b", t0, "")
	d = local.at(t, "c", t0, "")
	assert.True(t, d.Booked)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	in := local.at(t, "c", d.RetryAt, "")
	assert.True(t, in.Admitted)

	d = open.at(t, "a", t0, "")
	assert.True(t, d.Admitted)
	assert.Equal(t, limiter.ViaFallback, d.Via)

	seen := map[time.Duration]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		d, err := closed.Admit(ctx, id, "")
		require.ErrorIs(t, err, limiter.ErrUnavailable)
		assert.False(t, d.Admitted)
		assert.False(t, d.Booked)
		assert.Equal(t, limiter.ViaFallback, d.Via)
		assert.GreaterOrEqual(t, d.RetryAfter, time.Hour, "not before the breaker lets a probe through")
		assert.LessOrEqual(t, d.RetryAfter, 2*time.Hour)
		seen[d.RetryAfter] = true
	}
	assert.Greater(t, len(seen), 4, "refusals are spread, not synchronized")

	// A cancelled caller is not an outage.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := open.Admit(cctx, "z", "")
	assert.ErrorIs(t, err, context.Canceled)
}

// TestAdmissionFailLocalShare: with two live nodes, a node that loses Redis
// admits on half the limit. The heartbeats run on the clock, which the test
// moves to make them beat.
func TestAdmissionFailLocalShare(t *testing.T) {
	s := redistest.Start(t)
	name := uniqueName()
	clk := fakeclock.New(t0)
	var nodes []*Gate
	for _, id := range []string{"n1", "n2"} {
		a, err := NewShared(fleet.Redis{Client: s.Client(t), Name: name, Node: id, Timeout: 50 * time.Millisecond, BreakerFailures: 1,
			BreakerOpen: time.Hour, Heartbeat: 20 * time.Millisecond}, limiter.PerSecond(100, 100),
			SharedConfig{Config: Config{Config: limiter.Config{Clock: clk}}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		nodes = append(nodes, a)
	}
	require.Eventually(t, func() bool {
		clk.Add(20 * time.Millisecond)
		return nodes[0].link.Live() == 2
	}, 10*time.Second, 10*time.Millisecond)
	s.Kill(t)
	n0 := subject{nodes[0], clk}
	admitted := 0
	for i := range 100 {
		d := n0.at(t, "c"+string(rune(0x100+i)), clk.Now(), "")
		require.Equal(t, limiter.ViaFallback, d.Via)
		if d.Admitted {
			admitted++
		}
	}
	assert.Equal(t, 50, admitted, "half the burst: the limit divided by 2 live nodes")
}

// countingHook counts the commands a client sends.
type countingHook struct{ cmds, pipes atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipes.Add(1)
		return next(ctx, cmds)
	}
}

// TestSharedGateLogsBreakerTransitions: SharedConfig.Logger gets the
// breaker's transitions, tagged with the failure policy.
func TestSharedGateLogsBreakerTransitions(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	var buf logtest.Buffer
	name := uniqueName()
	g, err := NewShared(fleet.Redis{Client: dead, Name: name, Timeout: time.Second, BreakerFailures: 1, BreakerOpen: time.Hour},
		limiter.PerSecond(10, 10), SharedConfig{Failure: fleet.FailOpen, Logger: logtest.NewLogger(&buf)})
	require.NoError(t, err)
	defer g.Close()
	d, err := g.Admit(context.Background(), "c", "")
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	assert.Contains(t, buf.String(), `level=WARN msg="herdcap: redis breaker changed state" policy=open breaker=herdcap-`+name+` from=closed to=open`)
}
