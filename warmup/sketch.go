package warmup

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/herdcap/herdcap/limiter"
)

// maxSketch bounds Sketch's k.
const maxSketch = 1 << 20

// Sketch counts the keys a node is asked for and keeps the k most
// requested, in bounded memory, with the Space-Saving algorithm (Metwally,
// Agrawal and El Abbadi, 2005): a key not among the k takes the place of
// the least counted one and inherits its count, plus one. Any key asked
// for more than n/k times of n is kept, and a kept key's count exceeds its
// true count by at most the count it inherited. Top gives the kept keys,
// hottest first: a warm's source (see Warm.Staged, which shares one node's
// sketch with the fleet).
//
// Observe costs O(log k) and allocates only when a key enters the sketch.
// A Sketch is safe for concurrent use; its zero value is not usable.
type Sketch struct {
	mu   sync.Mutex
	k    int
	heap []sketchEntry // a min-heap by count
	at   map[string]int
}

type sketchEntry struct {
	key   string
	count uint64
}

// NewSketch returns a Sketch that keeps k keys, 1 to 1,048,576. A k out of
// range is an error wrapping limiter.ErrInvalidConfig.
func NewSketch(k int) (*Sketch, error) {
	if k < 1 || k > maxSketch {
		return nil, fmt.Errorf("%w: NewSketch's k must be 1 to %d, got %d", limiter.ErrInvalidConfig, maxSketch, k)
	}
	return &Sketch{k: k, at: make(map[string]int, k)}, nil
}

// Observe counts one request for key.
func (s *Sketch) Observe(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.at[key]; ok {
		s.heap[i].count++
		s.down(i)
		return
	}
	if len(s.heap) < s.k {
		s.heap = append(s.heap, sketchEntry{key: key, count: 1})
		s.at[key] = len(s.heap) - 1
		s.up(len(s.heap) - 1)
		return
	}
	delete(s.at, s.heap[0].key)
	s.heap[0].key = key
	s.heap[0].count++
	s.at[key] = 0
	s.down(0)
}

// Top returns the kept keys, hottest first (ties by key), with their
// counts as weights.
func (s *Sketch) Top() []Item {
	s.mu.Lock()
	out := make([]Item, len(s.heap))
	for i, e := range s.heap {
		out[i] = Item{Key: e.key, Weight: float64(e.count)}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Item) int {
		if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out
}

func (s *Sketch) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.at[s.heap[i].key], s.at[s.heap[j].key] = i, j
}

func (s *Sketch) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].count <= s.heap[i].count {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *Sketch) down(i int) {
	for {
		l, m := 2*i+1, i
		if l < len(s.heap) && s.heap[l].count < s.heap[m].count {
			m = l
		}
		if r := l + 1; r < len(s.heap) && s.heap[r].count < s.heap[m].count {
			m = r
		}
		if m == i {
			return
		}
		s.swap(i, m)
		i = m
	}
}
