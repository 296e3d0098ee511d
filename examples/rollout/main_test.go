package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/invalidate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }

// small is a reduced run: 200 clients, a rollout of 10 cohorts at 40
// clients per second (one cohort every 0.5 s), aborted after 2.5 s.
func small(store string) config {
	c := defaultConfig()
	c.clients, c.store = 200, store
	c.rate, c.cohorts, c.guardMin = 40, 10, 2*time.Second
	c.advance, c.cache, c.poll = 250*time.Millisecond, 250*time.Millisecond, 300*time.Millisecond
	c.admitRate, c.admitBurst = 400, 50
	c.startAfter, c.abortAfter, c.tail = 1500*time.Millisecond, 2500*time.Millisecond, 1500*time.Millisecond
	return c
}

func TestRolloutMemory(t *testing.T) { check(t, small("memory")) }

func TestRolloutRedis(t *testing.T) {
	redistest.Require(t) // the example starts its own redis-server; this applies the skip-or-fail rule
	check(t, small("redis"))
}

func check(t *testing.T, c config) {
	var out bytes.Buffer
	r, err := run(t.Context(), c, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)

	assert.Equal(t, invalidate.Aborted, r.Phase)
	assert.Positive(t, r.ReleasedFinal, "some cohorts were released before the abort")
	assert.Less(t, r.ReleasedFinal, c.cohorts, "the abort stopped the rollout part way")
	assert.Equal(t, r.ReleasedAtAbort, r.ReleasedFinal, "no node released a cohort after the abort")

	// Exactly the clients of the released cohorts were told, once each:
	// delivery is idempotent, and no node told a client of a cohort the
	// abort held back.
	assert.Zero(t, r.ToldOutside)
	assert.Zero(t, r.ToldTwice)
	assert.Equal(t, r.InReleased, r.Told, "every client of a released cohort polled after its release")

	// The fleet-wide pace: the notices applied in any one-second window
	// stay within the budget plus one wave, plus what the delivery delay
	// can shift into a window (a client learns of its cohort on its first
	// poll after its node's cache shows the release: up to poll + cache
	// later, so a window can hold releases from 1 s + that long).
	assert.LessOrEqual(t, float64(r.MaxNoticesPerSecond), r.Bound+r.LagAllowance)

	// Admission: the gate grants at most rate × 1 s + burst in any second.
	// Decisions are timed after Admit returns, which can move one across a
	// window edge; 10% of the rate covers that on a loaded machine.
	assert.LessOrEqual(t, float64(r.MaxNewPerSecond), 1.1*c.admitRate+float64(c.admitBurst))

	// After the abort, only clients of already-released cohorts that had
	// not polled yet are told: within advance + cache + poll of it. One
	// more second is for a loaded CI machine under -race.
	assert.LessOrEqual(t, r.LastNoticeAfterAbort, r.AbortEffectBound+time.Second)
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*config)
		want string
	}{
		{func(c *config) { c.clients = 0 }, "-clients"},
		{func(c *config) { c.store = "disk" }, "-store"},
		{func(c *config) { c.cohorts = 5 }, "-cohorts must be at least 10"},
		{func(c *config) { c.guardMin = time.Millisecond }, "-guard-min"},
		{func(c *config) { c.admitBurst = 0 }, "-admit"},
	} {
		c := defaultConfig()
		tc.mod(&c)
		_, err := run(context.Background(), c, &bytes.Buffer{})
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestMissingRedisServer(t *testing.T) {
	c := small("redis")
	c.redisServer = "/nonexistent/redis-server"
	_, err := run(t.Context(), c, &bytes.Buffer{})
	assert.ErrorIs(t, err, errNoRedis)
}
