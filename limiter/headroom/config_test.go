package headroom

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/origin"
)

func TestBadConfig(t *testing.T) {
	ok := Bounds{Floor: 1, Ceiling: 100}
	with := func(f func(b *Bounds)) Config {
		b := ok
		f(&b)
		return Config{Origins: map[string]Bounds{"db": b}}
	}
	nan, inf := math.NaN(), math.Inf(1)
	const db = `headroom.Config.Origins["db"].`
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"no origins", Config{}, "headroom.Config.Origins is empty"},
		{"interval", Config{Origins: map[string]Bounds{"db": ok}, Interval: 5 * time.Millisecond}, "headroom.Config.Interval"},
		{"negative interval", Config{Origins: map[string]Bounds{"db": ok}, Interval: -time.Second}, "headroom.Config.Interval"},
		{"empty name", Config{Origins: map[string]Bounds{"": ok}}, `headroom.Config.Origins[""]`},
		{"colon", Config{Origins: map[string]Bounds{"a:b": ok}}, `headroom.Config.Origins["a:b"]`},
		{"space", Config{Origins: map[string]Bounds{"a b": ok}}, `headroom.Config.Origins["a b"]`},
		{"brace", Config{Origins: map[string]Bounds{"{a}": ok}}, `headroom.Config.Origins["{a}"]`},
		{"control", Config{Origins: map[string]Bounds{"a\x01": ok}}, `headroom.Config.Origins["a\x01"]`},
		{"long name", Config{Origins: map[string]Bounds{strings.Repeat("a", 65): ok}}, "must be 1 to 64 bytes"},
		{"zero floor", with(func(b *Bounds) { b.Floor = 0 }), db + "Floor"},
		{"negative floor", with(func(b *Bounds) { b.Floor = -1 }), db + "Floor"},
		{"NaN floor", with(func(b *Bounds) { b.Floor = nan }), db + "Floor"},
		{"infinite floor", with(func(b *Bounds) { b.Floor = inf }), db + "Floor"},
		{"zero ceiling", with(func(b *Bounds) { b.Ceiling = 0 }), db + "Ceiling"},
		{"NaN ceiling", with(func(b *Bounds) { b.Ceiling = nan }), db + "Ceiling"},
		{"infinite ceiling", with(func(b *Bounds) { b.Ceiling = inf }), db + "Ceiling"},
		{"huge ceiling", with(func(b *Bounds) { b.Ceiling = 1e16 }), db + "Ceiling"},
		{"floor above ceiling", with(func(b *Bounds) { b.Floor = 200 }), db + "Floor"},
		{"initial below floor", with(func(b *Bounds) { b.Initial = 0.5 }), db + "Initial"},
		{"initial above ceiling", with(func(b *Bounds) { b.Initial = 101 }), db + "Initial"},
		{"negative initial", with(func(b *Bounds) { b.Initial = -1 }), db + "Initial"},
		{"NaN initial", with(func(b *Bounds) { b.Initial = nan }), db + "Initial"},
		{"negative burst", with(func(b *Bounds) { b.Burst = -time.Millisecond }), db + "Burst"},
		{"negative rise", with(func(b *Bounds) { b.MaxRise = -0.1 }), db + "MaxRise"},
		{"rise above 1", with(func(b *Bounds) { b.MaxRise = 1.5 }), db + "MaxRise"},
		{"NaN rise", with(func(b *Bounds) { b.MaxRise = nan }), db + "MaxRise"},
		{"negative fall", with(func(b *Bounds) { b.MaxFall = -0.1 }), db + "MaxFall"},
		{"fall of 1", with(func(b *Bounds) { b.MaxFall = 1 }), db + "MaxFall"},
		{"NaN fall", with(func(b *Bounds) { b.MaxFall = nan }), db + "MaxFall"},
		{"negative tolerance", with(func(b *Bounds) { b.Tolerance = -1 }), db + "Tolerance"},
		{"NaN tolerance", with(func(b *Bounds) { b.Tolerance = nan }), db + "Tolerance"},
		{"infinite tolerance", with(func(b *Bounds) { b.Tolerance = inf }), db + "Tolerance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBadSharedConfig(t *testing.T) {
	cfg := Config{Origins: map[string]Bounds{"db": {Floor: 1, Ceiling: 2}}}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer client.Close()
	noTimeouts := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer noTimeouts.Close()
	for _, tc := range []struct {
		name string
		r    fleet.Redis
		cfg  SharedConfig
		want string
	}{
		{"bounds", fleet.Redis{Client: client}, SharedConfig{Config: Config{Origins: map[string]Bounds{"db": {Floor: 3, Ceiling: 2}}}},
			`headroom.SharedConfig.Origins["db"].Floor`},
		{"failure", fleet.Redis{Client: client}, SharedConfig{Config: cfg, Failure: 9}, "headroom.SharedConfig.Failure"},
		{"client", fleet.Redis{}, SharedConfig{Config: cfg}, "Redis.Client is nil"},
		{"context timeouts", fleet.Redis{Client: noTimeouts}, SharedConfig{Config: cfg}, "ContextTimeoutEnabled"},
		{"name", fleet.Redis{Client: client, Name: "a:b"}, SharedConfig{Config: cfg}, "Redis.Name"},
		{"node without heartbeat", fleet.Redis{Client: client, Node: "n1"}, SharedConfig{Config: cfg, Failure: fleet.FailOpen},
			"headroom.SharedConfig.Failure is FailOpen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewShared(tc.r, tc.cfg)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 100}}})
	require.NoError(t, err)
	defer c.Close()
	o, err := c.Origin("db")
	require.NoError(t, err)
	assert.Equal(t, time.Second, c.interval)
	assert.Equal(t, Bounds{Floor: 10, Ceiling: 100, Initial: 10, Burst: 100 * time.Millisecond,
		MaxRise: 0.2, MaxFall: 0.5, Tolerance: 0.5}, o.b)
	assert.Equal(t, limiter.PerSecond(10, 1), o.Limit(), "Initial is the floor; the burst 100 ms of it, at least 1")
	assert.Equal(t, 0.0, o.Spare())
	st := o.Stats()
	assert.Equal(t, limiter.ViaLocal, st.Via)
	assert.Equal(t, int64(1), st.Live)
}

func TestOriginAndClose(t *testing.T) {
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 100}, "cache": {Floor: 1, Ceiling: 2}}})
	require.NoError(t, err)
	_, err = c.Origin("search")
	require.ErrorIs(t, err, ErrUnknownOrigin)
	assert.Contains(t, err.Error(), `"search"`)
	assert.Contains(t, err.Error(), `"cache", "db"`)
	o, err := c.Origin("db")
	require.NoError(t, err)
	o.Record(origin.Foreground, time.Millisecond, origin.Refused)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	_, err = c.Origin("db")
	require.ErrorIs(t, err, limiter.ErrClosed)
	o.Record(origin.Foreground, time.Millisecond, origin.Refused)
	o.Record(origin.Background, time.Millisecond, origin.Success)
	assert.Equal(t, int64(2), o.Stats().Dropped)
	assert.Equal(t, int64(1), o.counts[origin.Foreground][4].Load(), "only the Record before Close counted")
}

// TestRecord checks what Record counts: lanes, outcomes, refusals;
// Canceled and unknown lanes ignored; unknown outcomes as failures.
func TestRecord(t *testing.T) {
	clk := fakeclock.New(t0)
	c, err := New(Config{Origins: map[string]Bounds{"db": {Floor: 10, Ceiling: 1000, Initial: 100}}, Clock: clk})
	require.NoError(t, err)
	defer c.Close()
	o, _ := c.Origin("db")
	for range 60 {
		o.Record(origin.Foreground, 4*time.Millisecond, origin.Success)
	}
	o.Record(origin.Foreground, 2*time.Millisecond, origin.Success)
	o.Record(origin.Background, 9*time.Millisecond, origin.Success)
	o.Record(origin.Background, time.Second, origin.Timeout)
	o.Record(origin.Foreground, 0, origin.Refused)
	o.Record(origin.Foreground, 0, origin.Refused)
	o.Record(origin.Background, 0, origin.Refused)
	o.Record(origin.Foreground, time.Millisecond, origin.Canceled)
	o.Record(origin.Lane(7), time.Millisecond, origin.Success)
	o.Record(origin.Foreground, time.Millisecond, 200) // unknown: a failure
	clk.Add(time.Second)
	st := o.Stats()
	assert.Equal(t, [2]float64{62, 2}, st.Calls)
	assert.Equal(t, [2]float64{2, 1}, st.Refused)
	assert.Equal(t, int64(62), st.Success)
	assert.Equal(t, int64(1), st.Timeout)
	assert.Equal(t, int64(1), st.Failure)
	assert.Equal(t, 2*time.Millisecond, st.Baseline)
	assert.Equal(t, (60*4+2+9)*time.Millisecond/62, st.Sample)
	assert.True(t, st.Saturated, "2 errors in 64 calls")
	assert.Equal(t, int64(1), st.Intervals)
	assert.Equal(t, 62.0, st.Capacity)
	// Saturated by errors: the limit falls to drainFactor × 62 calls/s,
	// within MaxFall.
	assert.InDelta(t, drainFactor*62, o.Limit().Rate, 1e-9)
	assert.Equal(t, 0.0, o.Spare(), "the foreground (64/s with refusals) is above the limit")
}
