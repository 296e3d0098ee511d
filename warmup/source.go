package warmup

import (
	"context"
	"fmt"
	"iter"
	"math"

	"github.com/redis/go-redis/v9"
)

// Item is one key to warm and its weight (how hot it is: requests seen, a
// score); a source yields items in non-increasing weight order.
type Item struct {
	// Key is what Fetch and Store are called with; not empty.
	Key string
	// Weight is how hot Key is (requests seen, a score): not NaN, >= 0,
	// and no larger than the weight of the item before it.
	Weight float64
}

// Source yields a warm's items, hottest first, from a position on. Every
// node of a fleet must see the same sequence: chunk c of a warm is the
// items at positions [c × ChunkSize, (c+1) × ChunkSize), and nodes agree
// on chunk numbers, not on lists (see the package documentation).
//
// Items returns the items from position from (0-based) on, in order; an
// error ends the sequence (the Warmer retries the chunk later). The
// sequence must honour its consumer stopping early.
type Source interface {
	Items(ctx context.Context, from int64) iter.Seq2[Item, error]
}

// Stream returns a Source of seq's (key, weight) pairs: a generator, a
// file read line by line, a database cursor. It holds nothing in memory:
// Items(from) runs seq from its start and skips from pairs, so a node
// reads its chunks in one pass as long as it claims them in increasing
// order, and starts a new pass only when it takes over a chunk behind its
// position (an expired claim). seq must yield the same pairs every time
// it runs.
func Stream(seq iter.Seq2[string, float64]) Source { return streamSource{seq} }

type streamSource struct{ seq iter.Seq2[string, float64] }

func (s streamSource) Items(_ context.Context, from int64) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		var pos int64
		for k, w := range s.seq {
			if pos >= from && !yield(Item{k, w}, nil) {
				return
			}
			pos++
		}
	}
}

// Slice returns a Source of items, which it holds (and which must not be
// changed while a warm uses it).
func Slice(items []Item) Source { return sliceSource(items) }

type sliceSource []Item

func (s sliceSource) Items(_ context.Context, from int64) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for i := from; i >= 0 && i < int64(len(s)); i++ {
			if !yield(s[i], nil) {
				return
			}
		}
	}
}

// SortedSet returns a Source of the members of the Redis sorted set key,
// highest score first (ZRANGE ... REV by rank), read in pages of 1000
// members: any page is one round trip, whatever its position. The set must
// not change while a warm reads it (copy it to a key of its own first,
// e.g. with ZRANGESTORE), or nodes would disagree on what each chunk
// holds. Scores are the weights.
func SortedSet(client redis.UniversalClient, key string) Source {
	return zsetSource{c: client, key: key}
}

type zsetSource struct {
	c   redis.UniversalClient
	key string
}

const zsetPage = 1000

func (s zsetSource) Items(ctx context.Context, from int64) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for pos := from; ; pos += zsetPage {
			page, err := s.c.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: s.key, Start: pos, Stop: pos + zsetPage - 1, Rev: true}).Result()
			if err != nil {
				yield(Item{}, fmt.Errorf("warmup: reading sorted set %q at rank %d: %w", s.key, pos, err))
				return
			}
			for _, z := range page {
				k, ok := z.Member.(string)
				if !ok {
					k = fmt.Sprint(z.Member)
				}
				if !yield(Item{k, z.Score}, nil) {
					return
				}
			}
			if len(page) < zsetPage {
				return
			}
		}
	}
}

// checkItem reports whether it, at position pos after an item of weight
// prev (+Inf for the first), can be warmed.
func checkItem(pos int64, it Item, prev float64) error {
	switch {
	case it.Key == "":
		return fmt.Errorf("%w: item %d: empty key", ErrInvalidWarm, pos)
	case math.IsNaN(it.Weight):
		return fmt.Errorf("%w: item %d (key %q): weight is NaN", ErrInvalidWarm, pos, it.Key)
	case it.Weight < 0:
		return fmt.Errorf("%w: item %d (key %q): weight %v is negative", ErrInvalidWarm, pos, it.Key, it.Weight)
	case it.Weight > prev:
		return fmt.Errorf("%w: item %d (key %q): weight %v is above the previous item's %v (a source must be hottest first)",
			ErrInvalidWarm, pos, it.Key, it.Weight, prev)
	}
	return nil
}

// cursor reads a Source chunk by chunk, keeping its place, so that chunks
// claimed in increasing order cost one pass over the source.
type cursor struct {
	src  Source
	next func() (Item, error, bool)
	stop func()
	pos  int64 // position of the item next() returns
}

// read fills dst with the items at [from, from+n) and returns it (short at
// the end of the source).
func (c *cursor) read(ctx context.Context, from int64, n int, dst []Item) ([]Item, error) {
	dst = dst[:0]
	if c.next == nil || from < c.pos {
		c.close()
		c.next, c.stop = iter.Pull2(c.src.Items(ctx, from))
		c.pos = from
	}
	for c.pos < from+int64(n) {
		it, err, ok := c.next()
		if !ok {
			break
		}
		if err != nil {
			c.close()
			return dst, err
		}
		if c.pos >= from {
			dst = append(dst, it)
		}
		c.pos++
	}
	return dst, nil
}

func (c *cursor) close() {
	if c.stop != nil {
		c.stop()
	}
	c.next, c.stop, c.pos = nil, nil, 0
}

// stagedSource reads a staged warm's items from the store, a page at a
// time.
type stagedSource struct {
	store Store
	id    string
}

func (s stagedSource) Items(ctx context.Context, from int64) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		for pos := from; ; {
			page, err := s.store.staged(ctx, s.id, pos, stageBatch)
			if err == nil && len(page) == 0 && pos == from {
				err = fmt.Errorf("warmup: the staged items of warm %q are missing from the store", s.id)
			}
			if err != nil {
				yield(Item{}, err)
				return
			}
			for _, it := range page {
				if !yield(it, nil) {
					return
				}
			}
			if len(page) < stageBatch {
				return
			}
			pos += int64(len(page))
		}
	}
}
