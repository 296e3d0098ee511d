package invalidate

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/pace"
)

func sampleState() state {
	return state{phase: Paused, epoch: 1767225600000, cohorts: 100, released: 42, rate: 0.1,
		minDur: 600_000_000, clients: 12345, pop: 20000, credit: 123.456, last: 1767225600000000,
		hold: 1767225601000000, started: 1767225500000000, updated: 1767225599000000, guarded: true}
}

func TestStateRoundTrip(t *testing.T) {
	s := sampleState()
	text := s.encode()
	assert.Equal(t, "1 2 1767225600000 100 42 0.1 600000000 12345 20000 123.456 1767225600000000 1767225601000000 1767225500000000 1767225599000000 0 1", text)
	got, err := decodeState(text)
	require.NoError(t, err)
	assert.Equal(t, s, got)
}

func TestDecodeStateRejects(t *testing.T) {
	good := sampleState().encode()
	f := strings.Fields(good)
	with := func(i int, v string) string {
		g := append([]string(nil), f...)
		g[i] = v
		return strings.Join(g, " ")
	}
	for name, text := range map[string]string{
		"empty":              "",
		"short":              strings.Join(f[:15], " "),
		"long":               good + " 1",
		"double space":       strings.Replace(good, " ", "  ", 1),
		"version":            with(0, "2"),
		"phase":              with(1, "5"),
		"zero epoch":         with(2, "0"),
		"cohorts":            with(3, "0"),
		"cohorts above max":  with(3, "1048577"),
		"released above":     with(4, "101"),
		"negative released":  with(4, "-1"),
		"done, not released": with(1, "4"),
		"NaN rate":           with(5, "NaN"),
		"zero rate":          with(5, "0"),
		"infinite credit":    with(9, "+Inf"),
		"negative credit":    with(9, "-1"),
		"hex":                with(6, "0x10"),
		"guarded flag":       with(15, "2"),
		"garbage":            "hello world",
	} {
		_, err := decodeState(text)
		assert.ErrorIs(t, err, ErrCorrupt, name)
	}
	done := sampleState()
	done.phase, done.released = Done, done.cohorts
	_, err := decodeState(done.encode())
	assert.NoError(t, err)
}

func TestRolloutCodecRoundTrip(t *testing.T) {
	r := Rollout{ID: "id\x00{x}", Scope: "scope with spaces and ünïcode", Epoch: 7, Cohorts: 1000, Rate: 0.25,
		MinDuration: 90 * time.Second, By: "node-a", Clients: 1 << 30, Coverage: 0.75}
	b := encodeRollout(r)
	got, err := decodeRollout(b)
	require.NoError(t, err)
	assert.Equal(t, r, got)
	for i := range b {
		_, err := decodeRollout(b[:i])
		assert.ErrorIs(t, err, ErrCorrupt, "cut at %d", i)
	}
	_, err = decodeRollout(append(b, 0))
	assert.ErrorIs(t, err, ErrCorrupt, "trailing byte")
	bad := r
	bad.Cohorts = 0
	_, err = decodeRollout(encodeRollout(bad))
	assert.ErrorIs(t, err, ErrCorrupt, "an invalid rollout")
}

func TestDecodeRecordChecksAgreement(t *testing.T) {
	r := ro("a")
	s := sampleState()
	s.cohorts, s.released = r.Cohorts, 3
	_, err := decodeRecord("a", encodeRollout(r), s.encode())
	require.NoError(t, err)
	_, err = decodeRecord("b", encodeRollout(r), s.encode())
	assert.ErrorContains(t, err, "holds rollout")
	s.cohorts = 11
	_, err = decodeRecord("a", encodeRollout(r), s.encode())
	assert.ErrorContains(t, err, "cohorts")
	s.cohorts = 10
	r.Epoch = 5
	_, err = decodeRecord("a", encodeRollout(r), s.encode())
	assert.ErrorContains(t, err, "epoch")
}

func TestParseSnapshotRejectsOddReplies(t *testing.T) {
	good := []any{int64(3), "7", "gen", int64(1)}
	_, s, err := parseSnapshot(good)
	require.NoError(t, err)
	assert.Equal(t, version{ver: 7, gen: "gen"}, s.ver)
	for name, v := range map[string]any{
		"nil":            nil,
		"string":         "OK",
		"short":          []any{int64(0), "1", "g"},
		"ver not number": []any{int64(0), "x", "g", int64(0)},
		"negative pop":   []any{int64(-1), "1", "g", int64(0)},
		"bad flag":       []any{int64(0), "1", "g", int64(2)},
		"ragged triples": []any{int64(0), "1", "g", int64(1), "id", "blob"},
		"unchanged+recs": []any{int64(0), "1", "g", int64(0), "id", "blob", "st"},
	} {
		_, _, err := parseSnapshot(v)
		assert.ErrorIs(t, err, ErrCorrupt, name)
	}
	_, s, err = parseSnapshot([]any{int64(0), "1", "g", int64(1), "id", "blob", "st", int64(5), nil, "x"})
	require.NoError(t, err)
	assert.Equal(t, 2, s.corrupt, "undecodable records are counted and skipped")
	assert.Empty(t, s.recs)
}

func TestStepMatchesFormula(t *testing.T) {
	// 1000 clients, 10 cohorts, 100/s: one cohort per 1e6 µs.
	s := state{phase: Running, epoch: 1, cohorts: 10, rate: 100, clients: 1000}
	assert.False(t, s.step(500_000, 0, 0, 1_000_000, pace.None))
	assert.True(t, s.step(1_000_000, 0, 0, 1_000_000, pace.None))
	assert.Equal(t, 1, s.released)
	assert.False(t, s.step(1_500_000, 0, 2_000_000, 1_000_000, pace.None), "a hold")
	assert.Equal(t, int64(3_500_000), s.hold)
	assert.False(t, s.step(3_400_000, 0, 0, 1_000_000, pace.None))
	assert.True(t, s.step(4_500_000, 0, 0, 1_000_000, pace.None))
	assert.Equal(t, 2, s.released)
	assert.Equal(t, 0.0, s.credit, "one cohort's worth banked at most; the rest of the wave spent")
	s.step(5_000_000, 50_000, 0, 1_000_000, pace.None)
	assert.Equal(t, int64(50_000), s.pop, "the fleet's estimate raises the population")
	s.step(6_000_000, 10, 0, 1_000_000, pace.None)
	assert.Equal(t, int64(50_000), s.pop, "and it never falls during a rollout")
}
