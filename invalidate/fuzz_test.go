package invalidate

import (
	"bytes"
	"testing"
	"time"
)

// The Redis store reads back what anyone may have written under its keys:
// the decoders must reject garbage with ErrCorrupt, never panic, and accept
// only what re-encodes to itself.

func FuzzDecodeRollout(f *testing.F) {
	f.Add(encodeRollout(ro("a")))
	f.Add(encodeRollout(Rollout{ID: "x", Scope: ScopeAll, Epoch: MaxEpoch, Cohorts: 1 << 20, Rate: maxRate,
		MinDuration: time.Hour, By: "s", Clients: maxClients, Coverage: 1}))
	f.Add([]byte("hci\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRollout(b)
		if err != nil {
			return
		}
		if verr := r.Validate(); verr != nil {
			t.Fatalf("decoded an invalid rollout: %v", verr)
		}
		if again := encodeRollout(r); !bytes.Equal(again, b) {
			// Varints have one canonical form only when minimal; accept a
			// non-minimal input only if it decodes to the same rollout.
			r2, err := decodeRollout(again)
			if err != nil || r2 != r {
				t.Fatalf("re-encoding changed the rollout: %+v vs %+v (%v)", r, r2, err)
			}
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(sampleState().encode())
	done := sampleState()
	done.phase, done.released = Done, done.cohorts
	f.Add(done.encode())
	f.Add("1 1 5 10 0 100 0 1000 1000 0 0 0 0 0 0 0")
	f.Add("1 1 nan 10 0 100 0 1000 1000 0 0 0 0 0 0 0")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := decodeState(text)
		if err != nil {
			return
		}
		again, err := decodeState(s.encode())
		if err != nil {
			t.Fatalf("a decoded state does not re-decode: %v", err)
		}
		if again != s {
			t.Fatalf("round trip changed the state: %+v vs %+v", s, again)
		}
		// Whatever it holds, stepping it keeps it decodable and in bounds.
		before := s.released
		// A pace from the text's length: 0 (nothing banked) to above any
		// rate, so that paced steps are fuzzed too.
		s.step(s.last+1_000_000, int64(len(text)), 0, 1_000_000, float64(len(text)%7)*s.rate/3)
		if s.released < before || s.released > s.cohorts {
			t.Fatalf("step left released at %d of %d (was %d)", s.released, s.cohorts, before)
		}
		if _, err := decodeState(s.encode()); err != nil && s.last < maxStamp {
			t.Fatalf("a stepped state does not decode: %v (%q)", err, s.encode())
		}
	})
}

func FuzzDecodeDense(f *testing.F) {
	var r [hllRegisters]uint8
	r[5], r[hllRegisters-1] = 51, 7
	f.Add(encodeDense(&r))
	f.Add([]byte("HYLL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got [hllRegisters]uint8
		if !decodeDense(b, &got) {
			return
		}
		for i, v := range got {
			if v > 63 {
				t.Fatalf("register %d is %d", i, v)
			}
		}
		_ = hllCount(&got)
	})
}

func FuzzAppendDue(f *testing.F) {
	f.Add("client-1", uint64(0), 10, 3, 5, 2, false)
	f.Add("", uint64(9), 1, 1, 1, 0, true)
	f.Fuzz(func(t *testing.T, client string, applied uint64, cohortsA, relA, cohortsB, relB int, abortA bool) {
		clamp := func(c, r int) (int, int) {
			c = 1 + (c%1000+1000)%1000
			return c, (r%(c+1) + c + 1) % (c + 1)
		}
		ca, ra := clamp(cohortsA, relA)
		cb, rb := clamp(cohortsB, relB)
		recs := []record{
			{r: Rollout{ID: "a", Scope: "sa"}, st: state{epoch: 5, cohorts: ca, released: ra, phase: Running}},
			{r: Rollout{ID: "b", Scope: "sb"}, st: state{epoch: 9, cohorts: cb, released: rb, phase: Running}},
		}
		if abortA {
			recs[0].st.phase = Aborted
		}
		v := newView(recs, version{}, 0)
		out := v.appendDue(nil, client, applied)
		last := applied
		for _, n := range out {
			if n.Epoch <= last {
				t.Fatalf("notices out of order or already applied: %+v (applied %d)", out, applied)
			}
			last = n.Epoch
		}
		if len(out) == 1 && out[0].RolloutID == "b" && applied < 5 && !abortA {
			t.Fatalf("b delivered before a, which is pending and not aborted: %+v", out)
		}
	})
}
