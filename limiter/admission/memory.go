package admission

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/limiter"
)

// memStore is the memory store of a Gate: one token bucket for the whole
// gate and a bounded table of booked slots. Its arithmetic is that of
// admitScript, step for step and in the same units (µs, float64 tokens),
// so that the memory store and Redis book the same slots for the same
// calls.
type memStore struct {
	mu     sync.Mutex // guards the bucket
	tokens float64
	ts     int64 // last update, µs
	used   bool  // false: the bucket is full (as a missing Redis key)

	grace int64 // µs
	slots slotTable
}

func newMemStore(maxKeys int, grace time.Duration) *memStore {
	m := &memStore{grace: grace.Microseconds()}
	m.slots.init(maxKeys, m.grace)
	return m
}

// decide admits, books, honours or defers one client at now (µs). The
// client's slot-table shard is locked throughout, so two concurrent Admits
// of one client never book two slots.
func (m *memStore) decide(id string, now int64, lim limiter.Limit, horizon time.Duration) (status, time.Duration) {
	k := bucketkey.Local(id)
	sh := m.slots.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if at, ok := sh.m[k]; ok {
		if now < at {
			return admitEarly, time.Duration(at-now) * time.Microsecond
		}
		delete(sh.m, k)
		if now < at+m.grace {
			return admitSlot, 0
		}
		// Came back too late: the slot is forgotten, and this is a new
		// session.
	}
	wait, ok := m.reserve(now, lim, horizon.Microseconds())
	switch {
	case !ok:
		return admitDeferred, time.Duration(wait) * time.Microsecond
	case wait == 0:
		return admitNow, 0
	}
	m.slots.putLocked(sh, k, now+wait, now)
	return admitBooked, time.Duration(wait) * time.Microsecond
}

// reserve takes one token at now, possibly ahead (in debt), unless the wait
// for it would exceed horizon; it returns the wait in µs.
func (m *memStore) reserve(now int64, lim limiter.Limit, horizon int64) (int64, bool) {
	rate := lim.PerSecond() / 1e6
	burst := float64(lim.Burst)
	m.mu.Lock()
	defer m.mu.Unlock()
	tokens, ts := m.tokens, m.ts
	if !m.used {
		tokens, ts = burst, now
	}
	if now > ts {
		tokens += float64(now-ts) * rate
		ts = now
	}
	if tokens > burst {
		tokens = burst
	}
	var wait int64
	if tokens < 1 {
		wait = int64(math.Min(math.Ceil((1-tokens)/rate), 9e15))
	}
	if wait > horizon {
		return wait, false
	}
	m.tokens, m.ts, m.used = tokens-1, ts, true
	return wait, true
}

func (m *memStore) stats() Stats {
	s := &m.slots
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return Stats{
		Slots:          n,
		Capacity:       s.per * len(s.shards),
		Evictions:      s.evictions.Load(),
		LossyEvictions: s.lossy.Load(),
	}
}

// slotTable maps client keys (bucketkey.Local form) to their booked slot
// (µs), sharded and bounded. A slot is live until its time plus the grace;
// when a shard is full, an insert drops an expired slot of a small sample,
// else the sample's earliest slot (a lossy eviction).
type slotTable struct {
	seed             maphash.Seed
	shards           []slotShard
	mask             uint64
	per              int
	grace            int64
	evictions, lossy atomic.Uint64
}

type slotShard struct {
	mu sync.Mutex
	m  map[string]int64
	_  [40]byte // keep shards on separate cache lines
}

func (s *slotTable) init(maxKeys int, grace int64) {
	n := 1
	for n < 64 && maxKeys/(n*2) >= 16 {
		n *= 2
	}
	s.seed = maphash.MakeSeed()
	s.shards = make([]slotShard, n)
	s.mask = uint64(n - 1)
	s.per = max(1, maxKeys/n)
	s.grace = grace
	for i := range s.shards {
		s.shards[i].m = make(map[string]int64)
	}
}

func (s *slotTable) shard(k string) *slotShard {
	return &s.shards[maphash.String(s.seed, k)&s.mask]
}

// putLocked books slot at for k in sh, whose lock the caller holds.
func (s *slotTable) putLocked(sh *slotShard, k string, at, now int64) {
	for len(sh.m) >= s.per {
		s.evictLocked(sh, now)
	}
	sh.m[strings.Clone(k)] = at
}

// evictSample is how many slots an eviction looks at.
const evictSample = 8

func (s *slotTable) evictLocked(sh *slotShard, now int64) {
	var (
		victim string
		oldest int64 = math.MaxInt64
		i      int
	)
	for k, at := range sh.m { // map iteration starts at a random entry
		if now >= at+s.grace {
			delete(sh.m, k)
			s.evictions.Add(1)
			return
		}
		if at < oldest {
			oldest, victim = at, k
		}
		if i++; i == evictSample {
			break
		}
	}
	delete(sh.m, victim)
	s.evictions.Add(1)
	s.lossy.Add(1)
}
