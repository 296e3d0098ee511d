// Package keymap is the bounded, sharded key table of the in-process
// budgets (limiter.Local's buckets, fleet.Leased's leases): memory stays
// bounded under a flood of unique keys.
package keymap

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Map is a sharded map from keys to per-key state V, bounded in size.
//
// When a shard is full, an insert first drops an entry that idle reports as
// losing nothing (a full bucket, an empty lease), and failing that the least
// recently used of a small random sample, counting it as lossy. drop is
// called (under the shard lock, so it must be quick and must not call user
// code) for every entry removed.
type Map[V any] struct {
	// hot is the map's hottest slot: checked by string equality before the
	// key is even hashed. It is replaced only once it has gone unused for
	// a millisecond, so keys taking turns do not fight over its cache line.
	hot      atomic.Pointer[Slot[V]]
	seed     maphash.Seed
	shards   []kmShard[V]
	mask     uint64
	perShard int
	idle     func(v *V, t time.Time) bool
	drop     func(v *V)

	// Evictions counts entries dropped to make room; Lossy, those that
	// idle did not report as losing nothing.
	Evictions, Lossy atomic.Uint64
}

type kmShard[V any] struct {
	mu sync.RWMutex
	m  map[string]*Slot[V]
	// hot is the shard's most recently created or looked-up slot: a hot
	// key (the common case under a storm) skips the map and its lock.
	hot atomic.Pointer[Slot[V]]
	_   [32]byte // keep shards on separate cache lines
}

// Slot is one key's entry.
type Slot[V any] struct {
	// Key is the entry's key, as given to Get.
	Key  string
	seen atomic.Int64 // last use, unix ns, at millisecond granularity
	// V is the entry's state.
	V V
}

// touch records a use at now (unix ns), at millisecond granularity so that
// a hot slot's cache line is not written on every use.
func (s *Slot[V]) touch(now int64) {
	if seen := s.seen.Load(); now-seen > int64(time.Millisecond) || now < seen {
		s.seen.Store(now)
	}
}

// evictSample is how many entries an eviction looks at.
const evictSample = 8

// DefaultMax is the capacity of a map when none is configured.
const DefaultMax = 100_000

// New returns a map of at most about maxKeys entries (rounded down to a
// multiple of the shard count). idle reports whether dropping an entry
// loses nothing; drop, if not nil, is called (under a shard lock: it must
// be quick and call no user code) for every entry removed.
func New[V any](maxKeys int, idle func(*V, time.Time) bool, drop func(*V)) *Map[V] {
	shards := 1
	for shards < 64 && maxKeys/(shards*2) >= 16 {
		shards *= 2
	}
	m := &Map[V]{
		seed:     maphash.MakeSeed(),
		shards:   make([]kmShard[V], shards),
		mask:     uint64(shards - 1),
		perShard: maxKeys / shards,
		idle:     idle,
		drop:     drop,
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*Slot[V])
	}
	return m
}

// Get returns the slot for k, creating it with init (under the shard lock)
// when absent. k must already be in bucketkey.Local form.
func (m *Map[V]) Get(k string, t time.Time, init func(*V)) *Slot[V] {
	now := t.UnixNano()
	s := m.Lookup(k, now)
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
	s = &Slot[V]{Key: strings.Clone(k)}
	init(&s.V)
	s.seen.Store(now)
	sh.m[s.Key] = s
	sh.hot.Store(s)
	return s
}

// Lookup returns the slot for k, or nil when k has none, recording a use at
// now (unix ns). k must already be in bucketkey.Local form.
func (m *Map[V]) Lookup(k string, now int64) *Slot[V] {
	if s := m.hot.Load(); s != nil && s.Key == k {
		s.touch(now)
		return s
	}
	sh := &m.shards[maphash.String(m.seed, k)&m.mask]
	s := sh.hot.Load()
	if s == nil || s.Key != k {
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
func (m *Map[V]) evict(sh *kmShard[V], t time.Time) {
	var (
		victim *Slot[V]
		oldest int64 = math.MaxInt64
		i      int
	)
	for _, s := range sh.m { // map iteration starts at a random entry
		if m.idle(&s.V, t) {
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
	m.Lossy.Add(1)
}

// remove deletes s from sh, whose lock the caller holds.
func (m *Map[V]) remove(sh *kmShard[V], s *Slot[V]) {
	delete(sh.m, s.Key)
	sh.hot.CompareAndSwap(s, nil)
	m.hot.CompareAndSwap(s, nil)
	m.Evictions.Add(1)
	if m.drop != nil {
		m.drop(&s.V)
	}
}

// Each calls f for every slot, shard by shard, under the shard's read lock.
func (m *Map[V]) Each(f func(s *Slot[V])) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			f(s)
		}
		sh.mu.RUnlock()
	}
}

// Len returns the number of slots held.
func (m *Map[V]) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Capacity returns the most slots the map holds.
func (m *Map[V]) Capacity() int { return m.perShard * len(m.shards) }
