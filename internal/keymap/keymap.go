package limiter

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// keyMap is a sharded map from keys to per-key state V, bounded in size: the
// in-process key table of Local and Leased. Memory stays bounded under a
// flood of unique keys.
//
// When a shard is full, an insert first drops an entry that idle reports as
// losing nothing (a full bucket, an empty lease), and failing that the least
// recently used of a small random sample, counting it as lossy. drop is
// called (under the shard lock, so it must be quick and must not call user
// code) for every entry removed.
type keyMap[V any] struct {
	// hot is the map's hottest slot: checked by string equality before the
	// key is even hashed. It is replaced only once it has gone unused for
	// a millisecond, so keys taking turns do not fight over its cache line.
	hot      atomic.Pointer[slot[V]]
	seed     maphash.Seed
	shards   []kmShard[V]
	mask     uint64
	perShard int
	idle     func(v *V, t time.Time) bool
	drop     func(v *V)

	evictions, lossy atomic.Uint64
}

type kmShard[V any] struct {
	mu sync.RWMutex
	m  map[string]*slot[V]
	// hot is the shard's most recently created or looked-up slot: a hot
	// key (the common case under a storm) skips the map and its lock.
	hot atomic.Pointer[slot[V]]
	_   [32]byte // keep shards on separate cache lines
}

// slot is one key's entry.
type slot[V any] struct {
	key  string
	seen atomic.Int64 // last use, unix ns, at millisecond granularity
	v    V
}

// touch records a use at now (unix ns), at millisecond granularity so that
// a hot slot's cache line is not written on every use.
func (s *slot[V]) touch(now int64) {
	if seen := s.seen.Load(); now-seen > int64(time.Millisecond) || now < seen {
		s.seen.Store(now)
	}
}

// evictSample is how many entries an eviction looks at.
const evictSample = 8

func newKeyMap[V any](maxKeys int, idle func(*V, time.Time) bool, drop func(*V)) *keyMap[V] {
	shards := 1
	for shards < 64 && maxKeys/(shards*2) >= 16 {
		shards *= 2
	}
	m := &keyMap[V]{
		seed:     maphash.MakeSeed(),
		shards:   make([]kmShard[V], shards),
		mask:     uint64(shards - 1),
		perShard: maxKeys / shards,
		idle:     idle,
		drop:     drop,
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*slot[V])
	}
	return m
}

// get returns the slot for k, creating it with init (under the shard lock)
// when absent. k must already be in bucketkey.Local form.
func (m *keyMap[V]) get(k string, t time.Time, init func(*V)) *slot[V] {
	now := t.UnixNano()
	s := m.lookup(k, now)
	if s != nil {
		return s
	}
	sh := &m.shards[maphash.String(m.seed, k)&m.mask]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s = sh.m[k]; s != nil {
		return s
	}
	for len(sh.m) >= m.perShard {
		m.evict(sh, t)
	}
	s = &slot[V]{key: strings.Clone(k)}
	init(&s.v)
	s.seen.Store(now)
	sh.m[s.key] = s
	sh.hot.Store(s)
	return s
}

// lookup returns the slot for k, or nil when k has none, recording a use at
// now (unix ns). k must already be in bucketkey.Local form.
func (m *keyMap[V]) lookup(k string, now int64) *slot[V] {
	if s := m.hot.Load(); s != nil && s.key == k {
		s.touch(now)
		return s
	}
	sh := &m.shards[maphash.String(m.seed, k)&m.mask]
	s := sh.hot.Load()
	if s == nil || s.key != k {
		sh.mu.RLock()
		s = sh.m[k]
		sh.mu.RUnlock()
		if s == nil {
			return nil
		}
		sh.hot.Store(s)
	}
	s.touch(now)
	if g := m.hot.Load(); g == nil || now-g.seen.Load() > int64(time.Millisecond) {
		m.hot.Store(s)
	}
	return s
}

// evict drops one entry of sh, whose lock the caller holds.
func (m *keyMap[V]) evict(sh *kmShard[V], t time.Time) {
	var (
		victim *slot[V]
		oldest int64 = math.MaxInt64
		i      int
	)
	for _, s := range sh.m { // map iteration starts at a random entry
		if m.idle(&s.v, t) {
			m.remove(sh, s)
			return
		}
		if seen := s.seen.Load(); seen < oldest {
			oldest, victim = seen, s
		}
		if i++; i == evictSample {
			break
		}
	}
	m.remove(sh, victim)
	m.lossy.Add(1)
}

// remove deletes s from sh, whose lock the caller holds.
func (m *keyMap[V]) remove(sh *kmShard[V], s *slot[V]) {
	delete(sh.m, s.key)
	sh.hot.CompareAndSwap(s, nil)
	m.hot.CompareAndSwap(s, nil)
	m.evictions.Add(1)
	if m.drop != nil {
		m.drop(&s.v)
	}
}

// each calls f for every slot, shard by shard, under the shard's read lock.
func (m *keyMap[V]) each(f func(s *slot[V])) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			f(s)
		}
		sh.mu.RUnlock()
	}
}

// len returns the number of slots held.
func (m *keyMap[V]) len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// capacity returns the most slots the map holds.
func (m *keyMap[V]) capacity() int { return m.perShard * len(m.shards) }
