package invalidate

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// state is the mutable part of a stored rollout, and the pace it runs at.
// Times are microseconds since the Unix epoch and durations microseconds,
// exact in a float64, so that the memory store (Go) and the Redis store (Lua,
// where every number is a double) compute the same releases from the same
// inputs. The Redis store keeps it as the text encode produces; the field
// order is the one of the Lua scripts (see scripts.go).
type state struct {
	phase    Phase
	epoch    uint64
	cohorts  int
	released int
	rate     float64 // clients per second in force
	minDur   int64   // µs in force
	clients  int64   // Rollout.Clients
	pop      int64   // the largest population the pace was computed from
	credit   float64 // µs of running time banked toward the next cohort
	last     int64   // µs: progress is counted from here
	hold     int64   // µs: a health hold; no progress before it
	started  int64   // µs
	updated  int64   // µs: last release or phase change
	finished int64   // µs, 0 while unfinished
	guarded  bool
}

const stateFields = 16

// encode returns the stored text form: sixteen space-separated decimal
// numbers, the first the format version 1.
func (s state) encode() string {
	b := make([]byte, 0, 128)
	b = append(b, '1', ' ')
	b = strconv.AppendInt(b, int64(s.phase), 10)
	for _, v := range [...]int64{int64(s.epoch), int64(s.cohorts), int64(s.released)} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, s.rate, 'g', -1, 64)
	for _, v := range [...]int64{s.minDur, s.clients, s.pop} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, s.credit, 'g', -1, 64)
	g := int64(0)
	if s.guarded {
		g = 1
	}
	for _, v := range [...]int64{s.last, s.hold, s.started, s.updated, s.finished, g} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
	}
	return string(b)
}

// maxStamp bounds stored times and durations: 2^53 µs, exact in a double.
const maxStamp = 1 << 53

// decodeState parses encode's form strictly: exactly sixteen fields
// separated by single spaces, every number in range, and the phase
// consistent with the released count. Anything else is ErrCorrupt.
func decodeState(text string) (state, error) {
	var s state
	var f [stateFields]string
	n := 0
	for rest := text; ; {
		i := strings.IndexByte(rest, ' ')
		if n == stateFields {
			return s, corruptf("state has more than %d fields", stateFields)
		}
		if i < 0 {
			f[n] = rest
			n++
			break
		}
		f[n], rest = rest[:i], rest[i+1:]
		n++
	}
	if n != stateFields {
		return s, corruptf("state has %d fields, want %d", n, stateFields)
	}
	var ints [stateFields]int64
	for i, v := range f {
		if i == 5 || i == 9 { // rate, credit
			continue
		}
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || x < 0 || x > maxStamp {
			return s, corruptf("state field %d is %q", i+1, v)
		}
		ints[i] = x
	}
	rate, err1 := strconv.ParseFloat(f[5], 64)
	credit, err2 := strconv.ParseFloat(f[9], 64)
	switch {
	case ints[0] != 1:
		return s, corruptf("state version %d", ints[0])
	case ints[1] < int64(Running) || ints[1] > int64(Done):
		return s, corruptf("phase %d", ints[1])
	case ints[2] < 1 || ints[2] > MaxEpoch:
		return s, corruptf("epoch %d", ints[2])
	case ints[3] < 1 || ints[3] > maxCohorts:
		return s, corruptf("cohorts %d", ints[3])
	case ints[4] > ints[3]:
		return s, corruptf("released %d of %d cohorts", ints[4], ints[3])
	case (Phase(ints[1]) == Done) != (ints[4] == ints[3]):
		return s, corruptf("phase %v with %d of %d cohorts released", Phase(ints[1]), ints[4], ints[3])
	case err1 != nil || !(rate >= minRate && rate <= maxRate):
		return s, corruptf("rate %q", f[5])
	case err2 != nil || !(credit >= 0 && credit <= maxStamp):
		return s, corruptf("credit %q", f[9])
	case ints[7] > maxClients:
		return s, corruptf("clients %d", ints[7])
	case ints[15] > 1:
		return s, corruptf("guarded flag %d", ints[15])
	}
	return state{
		phase: Phase(ints[1]), epoch: uint64(ints[2]), cohorts: int(ints[3]), released: int(ints[4]),
		rate: rate, minDur: ints[6], clients: ints[7], pop: ints[8], credit: credit,
		last: ints[10], hold: ints[11], started: ints[12], updated: ints[13], finished: ints[14],
		guarded: ints[15] == 1,
	}, nil
}

// interval is the running time one cohort takes, in µs, at population pop:
// the larger of the rate's interval and MinDuration's share. The Lua
// scripts compute the same expression in the same order.
func (s *state) interval(pop int64) float64 {
	return math.Max(float64(pop)*1e6/(float64(s.cohorts)*s.rate), float64(s.minDur)/float64(s.cohorts))
}

// step advances a running rollout to now (µs). fleetPop is the store's
// estimate of distinct clients seen; holdUs > 0 is a health hold of that
// length (nothing is released, and no time before now+holdUs counts);
// banked running time is capped at one interval plus waveUs (the advance
// interval): a steady cadence of advances never loses time, whatever the
// ratio of the two intervals, and a gap between advances releases at most
// one cohort more than the steady pace would. It reports whether the released count
// or the phase changed. It is the Go twin of the advance script's step.
//
// pace (clients per second, >= 0; +Inf: none) is the origin's headroom
// for this advance. Below the rollout's rate it slows the rollout: a
// cohort then takes the paced interval
//
//	ivp = max(pop / (cohorts × pace), minDur / cohorts)
//
// of running time, so the time since the last advance banks dt × iv/ivp
// (and the cap is iv + waveUs × iv/ivp: a gap releases at most one cohort
// plus a wave at the pace). The bank stays in µs of running time at the
// rate, so the stored state keeps its format. ivp >= iv always: pacing
// can only slow a rollout, never speed it past its rate or MinDuration.
// Pace 0 banks nothing (ivp is +Inf), but is no hold: s.hold is untouched.
func (s *state) step(now, fleetPop, holdUs, waveUs int64, pace float64) bool {
	if s.phase != Running {
		return false
	}
	s.pop = max(s.clients, fleetPop, s.pop, 1)
	if holdUs > 0 {
		s.hold = max(s.hold, now+holdUs)
		s.last = max(s.last, now)
		return false
	}
	from := max(s.last, s.hold)
	if now <= from {
		return false
	}
	iv := s.interval(s.pop)
	gain, ceil := float64(now-from), iv+float64(waveUs)
	if pace < s.rate {
		ivp := math.Max(float64(s.pop)*1e6/(float64(s.cohorts)*pace), float64(s.minDur)/float64(s.cohorts))
		if ivp > iv {
			// Explicit conversions round each product, as Lua does.
			gain = float64(gain*iv) / ivp
			ceil = iv + float64(float64(waveUs)*iv)/ivp
		}
	}
	credit := math.Min(s.credit+gain, ceil)
	s.last = now
	n := math.Floor(credit / iv)
	if left := float64(s.cohorts - s.released); n > left {
		n = left
	}
	// The conversion rounds the product, so no fused multiply-add can make
	// Go differ from Lua here.
	s.credit = math.Max(0, credit-float64(n*iv))
	if n <= 0 {
		return false
	}
	s.released += int(n)
	s.updated = now
	if s.released == s.cohorts {
		s.phase, s.finished, s.credit = Done, now, 0
	}
	return true
}

// control applies a pause, resume or abort at now (µs). It reports whether
// the state changed; err is ErrFinished when the action cannot apply.
func (s *state) control(act action, now int64) (bool, error) {
	switch {
	case act == actAbort && s.phase == Aborted,
		act == actPause && s.phase == Paused,
		act == actResume && s.phase == Running:
		return false, nil
	case s.phase.Finished():
		return false, ErrFinished
	}
	switch act {
	case actPause:
		s.phase = Paused
	case actResume:
		s.phase = Running
		s.last = max(s.last, now)
	case actAbort:
		s.phase, s.finished, s.credit = Aborted, now, 0
	}
	s.updated = now
	return true, nil
}

// merge folds what a node knew (k) into the stored state s, for a restore:
// the released count only grows, an abort is kept (the most final state
// wins: a node with an older view, which still saw the rollout running,
// cannot undo an abort another node knows). It reports whether s changed.
func (s *state) merge(k *state, now int64) bool {
	changed := false
	if k.released > s.released {
		s.released, s.updated, changed = k.released, now, true
	}
	if k.phase == Aborted && !s.phase.Finished() {
		s.phase, s.finished, s.credit, s.updated, changed = Aborted, now, 0, now, true
	}
	if s.released == s.cohorts && s.phase != Done {
		s.phase, s.credit, s.updated, changed = Done, 0, now, true
		if s.finished == 0 {
			s.finished = now
		}
	}
	return changed
}

// action is a control operation.
type action uint8

const (
	actPause action = iota + 1
	actResume
	actAbort
)

func (a action) String() string {
	switch a {
	case actPause:
		return "pause"
	case actResume:
		return "resume"
	case actAbort:
		return "abort"
	}
	return "action?"
}

// status combines a stored request and its state into a Status.
func (s *state) status(r Rollout) Status {
	r.Epoch = s.epoch
	st := Status{
		Rollout:        r,
		Phase:          s.phase,
		Released:       s.released,
		Guarded:        s.guarded,
		Rate:           s.rate,
		MinDuration:    time.Duration(s.minDur) * time.Microsecond,
		Population:     int(s.pop),
		CohortInterval: microsDuration(s.interval(max(s.pop, 1))),
		StartedAt:      fromMicros(s.started),
		UpdatedAt:      fromMicros(s.updated),
	}
	if s.finished > 0 {
		st.FinishedAt = fromMicros(s.finished)
	}
	if s.hold > 0 {
		st.HoldUntil = fromMicros(s.hold)
	}
	return st
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// microsDuration converts µs to a Duration, rounding up and saturating.
func microsDuration(us float64) time.Duration {
	ns := math.Ceil(us * 1e3)
	if ns >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ns)
}
