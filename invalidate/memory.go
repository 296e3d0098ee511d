package invalidate

import (
	"context"
	"sync"

	"github.com/herdcap/herdcap/limiter"
)

// MemoryStore keeps rollouts in process: the embedded default, for a single
// node, tests and the storm simulator. Several Coordinators may share one
// MemoryStore (they then behave as the nodes of a fleet sharing one Redis).
// It makes exactly the releases the Redis store makes for the same calls at
// the same times. A MemoryStore is safe for concurrent use; its zero value
// is not usable, call NewMemoryStore.
type MemoryStore struct {
	mu   sync.Mutex
	recs map[string]*record
	seq  uint64 // the highest epoch assigned
	ver  version
	seen map[int64]*[hllRegisters]uint8 // population sketches by window

	startsMu sync.Mutex
	starts   map[limiter.Clock]*limiter.Local // the default guard start budget, shared by the store's coordinators, per clock
}

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{recs: make(map[string]*record), seen: make(map[int64]*[hllRegisters]uint8)}
}

var _ Store = (*MemoryStore)(nil)

func (m *MemoryStore) name() string { return "memory" }

// bump records a change visible to Due, creating the metadata (gen) on the
// first write as the Redis store does.
func (m *MemoryStore) bump(gen string) {
	if m.ver.gen == "" {
		m.ver.gen = gen
	}
	m.ver.ver++
}

func (m *MemoryStore) start(_ context.Context, req startReq) (startRes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := req.now.us
	if e, ok := m.recs[req.r.ID]; ok {
		return startRes{code: startExists, rec: *e}, nil
	}
	if len(m.recs) >= req.max {
		if m.purge(now, req.retention) {
			m.bump(req.gen)
		}
		if len(m.recs) >= req.max {
			return startRes{code: startTooMany}, nil
		}
	}
	base := max(m.seq, req.floor)
	epoch := req.st.epoch
	nowMs := uint64(max(now, 0) / 1000)
	if epoch == 0 {
		epoch = max(base+1, nowMs)
	} else if epoch <= base {
		return startRes{code: startBackwards, seq: base}, nil
	} else if ceil := max(base+1, nowMs+req.jump); epoch > ceil {
		return startRes{code: startTooFar, seq: base, ceil: ceil}, nil
	}
	if epoch > MaxEpoch {
		return startRes{code: startBackwards, seq: base}, nil
	}
	if req.dryRun {
		return startRes{code: startWouldCreate}, nil
	}
	st := req.st
	st.epoch, st.phase, st.released, st.pop, st.credit = epoch, Running, 0, max(st.clients, st.pop), 0
	st.last, st.hold, st.started, st.updated, st.finished = now, 0, now, now, 0
	if req.holdUs > 0 {
		st.hold = now + req.holdUs
	}
	rec := &record{r: req.r, st: st}
	m.recs[req.r.ID] = rec
	m.seq = epoch
	m.bump(req.gen)
	return startRes{code: startCreated, rec: *rec}, nil
}

// purge drops the rollouts finished at least retention µs before now. The
// caller holds m.mu.
func (m *MemoryStore) purge(now, retention int64) bool {
	purged := false
	for id, e := range m.recs {
		if e.st.phase.Finished() && e.st.finished+retention <= now {
			delete(m.recs, id)
			purged = true
		}
	}
	return purged
}

func (m *MemoryStore) get(_ context.Context, id string) (record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.recs[id]; ok {
		return *e, nil
	}
	return record{}, ErrUnknownRollout
}

func (m *MemoryStore) control(_ context.Context, id string, act action, now stamp, gen string) (record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.recs[id]
	if !ok {
		return record{}, false, ErrUnknownRollout
	}
	changed, err := e.st.control(act, now.us)
	if changed {
		m.bump(gen)
	}
	return *e, changed, err
}

func (m *MemoryStore) advance(_ context.Context, req advanceReq) (advanceRes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := req.now.us
	var res advanceRes
	if req.window >= 0 {
		cur := m.seen[req.window]
		if req.sketch != nil {
			var r [hllRegisters]uint8
			if decodeDense(req.sketch, &r) {
				if cur == nil {
					cur = new([hllRegisters]uint8)
					m.seen[req.window] = cur
				}
				mergeRegisters(cur, &r)
			}
		}
		for w := range m.seen {
			if w < req.window-1 || w > req.window {
				delete(m.seen, w)
			}
		}
		var union [hllRegisters]uint8
		for _, w := range [2]int64{req.window, req.window - 1} {
			if s := m.seen[w]; s != nil {
				mergeRegisters(&union, s)
			}
		}
		res.pop = int64(hllCount(&union))
	}
	changed := m.purge(now, req.retention)
	for _, e := range m.recs {
		if e.st.step(now, res.pop, req.holdUs, req.waveUs, req.pace) {
			changed = true
		}
	}
	if changed {
		m.bump(req.gen)
	}
	res.snap = m.snapshotLocked(req.known)
	return res, nil
}

func (m *MemoryStore) snapshot(_ context.Context, known version) (snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked(known), nil
}

func (m *MemoryStore) snapshotLocked(known version) snapshot {
	s := snapshot{ver: m.ver}
	if m.ver == known {
		return s
	}
	s.changed = true
	s.recs = make([]record, 0, len(m.recs))
	for _, e := range m.recs {
		s.recs = append(s.recs, *e)
	}
	return s
}

func (m *MemoryStore) restore(_ context.Context, recs []record, now stamp, graceUs int64, gen string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, k := range recs {
		if _, err := decodeState(k.st.encode()); err != nil {
			continue // as the Lua script, trust only a state that holds together
		}
		e, ok := m.recs[k.r.ID]
		if !ok {
			st := k.st
			st.last, st.credit = now.us, 0
			if graceUs > 0 && !st.phase.Finished() {
				st.hold = max(st.hold, now.us+graceUs)
			}
			m.recs[k.r.ID] = &record{r: k.r, st: st}
			m.seq = max(m.seq, st.epoch)
			n++
			continue
		}
		if e.r == k.r && e.st.epoch == k.st.epoch && e.st.merge(&k.st, now.us) {
			n++
		}
	}
	if n > 0 {
		m.bump(gen)
	}
	return n, nil
}

// startBudget returns the store's guard start budget: one limiter.Local
// shared by every coordinator on this store (the nodes of an in-process
// fleet) on the same clock (nil: the system clock).
func (m *MemoryStore) startBudget(clock limiter.Clock) (limiter.Budget, func(), error) {
	m.startsMu.Lock()
	defer m.startsMu.Unlock()
	if b := m.starts[clock]; b != nil {
		return b, func() {}, nil
	}
	b, err := limiter.NewLocal(defaultGuardStarts, limiter.Config{Clock: clock})
	if err != nil {
		return nil, nil, err
	}
	if m.starts == nil {
		m.starts = make(map[limiter.Clock]*limiter.Local)
	}
	m.starts[clock] = b
	return b, func() {}, nil
}
