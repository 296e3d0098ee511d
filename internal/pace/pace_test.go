package pace

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

type spare func() float64

func (s spare) Spare() float64 { return s() }

func TestPer(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want float64
		ok   bool
	}{{0, 1, true}, {2.5, 2.5, true}, {1e-300, 1e-300, true}, {-1, 0, false}, {math.NaN(), 0, false}, {math.Inf(1), 0, false}, {math.Inf(-1), 0, false}} {
		got, ok := Per(tc.in)
		assert.Equal(t, tc.ok, ok, "%v", tc.in)
		assert.Equal(t, tc.want, got, "%v", tc.in)
	}
}

func TestRead(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	v, boom := 0.0, false
	r := &Reader{H: spare(func() float64 {
		if boom {
			panic("boom")
		}
		return v
	}), Per: 4, Log: log, What: "test", Attrs: []any{"node", "n1"}}
	for _, tc := range []struct{ spare, want float64 }{
		{100, 25}, {0, 0}, {-1, 0}, {math.NaN(), 0}, {math.Inf(-1), 0}, {math.Inf(1), None}, {math.MaxFloat64, math.MaxFloat64 / 4},
	} {
		v = tc.spare
		assert.Equal(t, tc.want, r.Read(), "%v", tc.spare)
	}
	boom = true
	assert.Equal(t, None, r.Read(), "a panic is no pace")
	assert.Equal(t, None, r.Read())
	boom, v = false, 8
	assert.Equal(t, 2.0, r.Read())
	assert.Equal(t, uint64(2), r.Panics())
	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "test headroom panicked"), out)
	assert.Equal(t, 1, strings.Count(out, "test headroom answers again"), out)
	assert.Contains(t, out, "node=n1")
	assert.Contains(t, out, "panic=boom")
}
