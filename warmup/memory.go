package warmup

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryStore keeps warms in process, for one node (or the Warmers of one
// process). Its zero value is not usable; use NewMemoryStore. It is safe
// for concurrent use and holds no goroutine.
type MemoryStore struct {
	mu    sync.Mutex
	warms map[string]*memWarm
	areas map[[2]string][]Item // staging areas by (id, node)
}

type memWarm struct {
	rec    record
	items  []Item // staged
	done   bitset
	claims map[int64]memClaim
}

type memClaim struct {
	node string
	exp  int64
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-process store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{warms: map[string]*memWarm{}, areas: map[[2]string][]Item{}}
}

func memNow(now int64) int64 {
	if now < 0 {
		return time.Now().UnixMicro()
	}
	return now
}

func (s *MemoryStore) register(_ context.Context, r regReq) (record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	area := s.areas[[2]string{r.id, r.node}]
	delete(s.areas, [2]string{r.id, r.node})
	if w, ok := s.warms[r.id]; ok {
		if w.rec.keys != r.keys || w.rec.chunkSize != r.chunkSize {
			return w.snapshot(), false, conflict(&w.rec, r)
		}
		return w.snapshot(), false, nil
	}
	now := memNow(r.now)
	w := &memWarm{claims: map[int64]memClaim{}}
	w.rec = record{id: r.id, phase: Running, keys: r.keys, chunkSize: r.chunkSize, staged: r.staged, startedBy: r.by,
		startedUs: now, updatedUs: now, resumedUs: now, gen: newGen()}
	if r.staged {
		w.items = area
	}
	w.finishIfDone(now)
	s.warms[r.id] = w
	return w.snapshot(), true, nil
}

func conflict(have *record, r regReq) error {
	return fmt.Errorf("%w: warm %q has %d keys in chunks of %d, this one %d in chunks of %d",
		ErrConflict, r.id, have.keys, have.chunkSize, r.keys, r.chunkSize)
}

func (w *memWarm) snapshot() record {
	r := w.rec
	r.failedKeys = append([]string(nil), r.failedKeys...)
	r.claimed = int64(len(w.claims))
	return r
}

func (w *memWarm) finishIfDone(now int64) {
	if w.rec.doneChunks >= w.rec.chunks() && !w.rec.phase.Finished() {
		w.rec.runUs = w.rec.running(now)
		w.rec.phase, w.rec.finishedUs, w.rec.updatedUs = Done, now, now
		clear(w.claims)
	}
}

func (s *MemoryStore) get(_ context.Context, id string) (record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[id]
	if !ok {
		return record{}, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	return w.snapshot(), nil
}

func (s *MemoryStore) claim(_ context.Context, r claimReq) (claimRes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[r.id]
	if !ok {
		return claimRes{missing: true, chunk: -1}, nil
	}
	res := claimRes{phase: w.rec.phase, chunk: -1, gen: w.rec.gen}
	now := memNow(r.now)
	if w.rec.phase != Running || now < w.rec.holdUs {
		return res, nil
	}
	// An expired claim first: the lowest such chunk.
	for c, cl := range w.claims {
		switch {
		case cl.exp > now:
		case w.done.has(c): // done by another node after a takeover
			delete(w.claims, c)
		case res.chunk < 0 || c < res.chunk:
			res.chunk = c
		}
	}
	if res.chunk < 0 {
		for w.rec.next < w.rec.chunks() && w.done.has(w.rec.next) {
			w.rec.next++
		}
		if w.rec.next < w.rec.chunks() {
			res.chunk = w.rec.next
			w.rec.next++
		}
	}
	if res.chunk >= 0 {
		w.claims[res.chunk] = memClaim{node: r.node, exp: now + r.ttlUs}
	}
	return res, nil
}

func (s *MemoryStore) renew(_ context.Context, r claimReq, chunk int64) (claimRes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[r.id]
	if !ok {
		return claimRes{missing: true, chunk: -1}, nil
	}
	res := claimRes{phase: w.rec.phase, chunk: chunk, gen: w.rec.gen}
	if cl, ok := w.claims[chunk]; ok && cl.node == r.node {
		cl.exp = memNow(r.now) + r.ttlUs
		w.claims[chunk] = cl
		res.held = true
	}
	return res, nil
}

func (s *MemoryStore) complete(_ context.Context, r claimReq, chunk int64, failed []string, nFailed int64, maxFailed int) (claimRes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[r.id]
	if !ok {
		return claimRes{missing: true, chunk: -1}, nil
	}
	now := memNow(r.now)
	if cl, ok := w.claims[chunk]; ok && cl.node == r.node {
		delete(w.claims, chunk)
	}
	if chunk >= 0 && chunk < w.rec.chunks() && w.done.set(chunk) {
		w.rec.doneChunks++
		w.rec.lastDone = w.rec.lastDone || chunk == w.rec.chunks()-1
		w.rec.failed += nFailed
		w.rec.failedKeys = pushFailed(w.rec.failedKeys, failed, maxFailed)
		w.rec.updatedUs = now
		w.finishIfDone(now)
	}
	return claimRes{phase: w.rec.phase, chunk: chunk, gen: w.rec.gen}, nil
}

// pushFailed puts keys at the front of list, newest first, keeping max.
func pushFailed(list, keys []string, max int) []string {
	out := make([]string, 0, min(len(list)+len(keys), max))
	for i := len(keys) - 1; i >= 0 && len(out) < max; i-- {
		out = append(out, keys[i])
	}
	for _, k := range list {
		if len(out) >= max {
			break
		}
		out = append(out, k)
	}
	return out
}

// appendFailed puts keys at the back of list, keeping max.
func appendFailed(list, keys []string, max int) []string {
	for _, k := range keys {
		if len(list) >= max {
			break
		}
		list = append(list, k)
	}
	return list
}

func (s *MemoryStore) control(_ context.Context, id string, act action, by By, now int64) (record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[id]
	if !ok {
		return record{}, false, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	now = memNow(now)
	rec := &w.rec
	switch {
	case rec.phase == Done || (rec.phase == Aborted && act != actAbort):
		return w.snapshot(), false, ErrFinished
	case act == actAbort && rec.phase == Aborted,
		act == actPause && rec.phase == Paused,
		act == actResume && rec.phase == Running:
		return w.snapshot(), false, nil
	}
	rec.runUs = rec.running(now)
	switch act {
	case actPause:
		rec.phase = Paused
	case actResume:
		rec.phase, rec.resumedUs = Running, now
	case actAbort:
		rec.phase, rec.finishedUs = Aborted, now
		clear(w.claims)
	}
	rec.by, rec.updatedUs = by, now
	return w.snapshot(), true, nil
}

func (s *MemoryStore) stage(_ context.Context, id, node string, items []Item, first bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{id, node}
	if first {
		delete(s.areas, k)
	}
	s.areas[k] = append(s.areas[k], items...)
	return nil
}

func (s *MemoryStore) staged(_ context.Context, id string, from int64, n int) ([]Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.warms[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	if from >= int64(len(w.items)) {
		return nil, nil
	}
	return append([]Item(nil), w.items[from:min(from+int64(n), int64(len(w.items)))]...), nil
}

func (s *MemoryStore) restore(_ context.Context, r restoreReq) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := memNow(r.now)
	area := s.areas[[2]string{r.rec.id, r.node}]
	delete(s.areas, [2]string{r.rec.id, r.node})
	w, ok := s.warms[r.rec.id]
	defer func() {
		if w.rec.staged && w.items == nil {
			w.items = area
		}
	}()
	if !ok {
		w = &memWarm{claims: map[int64]memClaim{}, rec: r.rec}
		w.rec.next, w.rec.doneChunks, w.rec.lastDone, w.rec.failedKeys = 0, 0, false, nil
		w.rec.gen, w.rec.holdUs = newGen(), now+r.holdUs
		if w.rec.phase == Running {
			w.rec.resumedUs = now
		}
		s.warms[r.rec.id] = w
	} else if w.rec.gen == r.known {
		return w.rec.gen, nil
	}
	// Merge this node's knowledge.
	for c := int64(0); c < w.rec.chunks(); c++ {
		if bitset(r.done).has(c) && w.done.set(c) {
			w.rec.doneChunks++
			w.rec.lastDone = w.rec.lastDone || c == w.rec.chunks()-1
		}
	}
	w.rec.failed += r.rec.failed
	w.rec.failedKeys = appendFailed(w.rec.failedKeys, r.rec.failedKeys, r.maxFailed)
	for _, c := range r.held {
		if _, ok := w.claims[c]; !ok && !w.done.has(c) {
			w.claims[c] = memClaim{node: r.node, exp: now + r.ttlUs}
		}
	}
	if r.rec.phase == Aborted && !w.rec.phase.Finished() {
		w.rec.runUs = w.rec.running(now)
		w.rec.phase, w.rec.finishedUs, w.rec.by = Aborted, now, r.rec.by
		clear(w.claims)
	}
	if w.rec.phase == Running {
		w.finishIfDone(now)
	}
	return w.rec.gen, nil
}
