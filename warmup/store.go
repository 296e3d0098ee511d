package warmup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Store is where a fleet's warms live: NewMemoryStore (one process) or
// NewRedisStore (a fleet). Each operation is atomic in the store, so any
// node may register, claim, complete and control any warm. The methods are
// unexported: a Store is given to New and used only through a Warmer.
// Stores are safe for concurrent use.
type Store interface {
	// register creates a warm unless its ID exists, and returns it.
	register(ctx context.Context, r regReq) (rec record, created bool, err error)
	// get returns one warm, or ErrUnknownWarm.
	get(ctx context.Context, id string) (record, error)
	// claim hands node the lowest chunk that is neither done nor held
	// (an expired claim first), or none.
	claim(ctx context.Context, r claimReq) (claimRes, error)
	// renew extends node's claim on a chunk, if it still holds it.
	renew(ctx context.Context, r claimReq, chunk int64) (claimRes, error)
	// complete marks a chunk done and drops node's claim on it.
	complete(ctx context.Context, r claimReq, chunk int64, failed []string, nFailed int64, maxFailed int) (claimRes, error)
	// control pauses, resumes or aborts a warm.
	control(ctx context.Context, id string, act action, by By, now int64) (rec record, changed bool, err error)
	// stage appends items to this node's staging area for warm id (first:
	// emptied before), which register or restore then makes the warm's
	// staged items.
	stage(ctx context.Context, id, node string, items []Item, first bool) error
	// staged returns up to n staged items of warm id from position from.
	staged(ctx context.Context, id string, from int64, n int) ([]Item, error)
	// restore writes a warm the store lost back, or merges a node's own
	// knowledge (done chunks, failures, held chunks) into one written
	// back by another node; see restoreReq.
	restore(ctx context.Context, r restoreReq) (gen string, err error)
}

// action is a control.
type action uint8

const (
	actPause action = iota + 1
	actResume
	actAbort
)

var actionNames = [...]string{actPause: "pause", actResume: "resume", actAbort: "abort"}

func (a action) String() string { return actionNames[a] }

// record is a warm's state in the store. Times are µs since the Unix epoch.
type record struct {
	id         string
	phase      Phase
	keys       int64
	chunkSize  int
	staged     bool // the items are in the store (Warm.Staged)
	startedBy  string
	by         By
	next       int64 // lowest chunk never handed out (done chunks are skipped)
	doneChunks int64
	lastDone   bool // the last chunk (possibly short) is done
	claimed    int64
	failed     int64
	failedKeys []string
	startedUs  int64
	updatedUs  int64
	finishedUs int64
	runUs      int64 // running time banked before resumedUs
	resumedUs  int64 // start of the current running stretch (Running only)
	holdUs     int64 // no chunk is handed out before this (after a restore)
	gen        string
}

func (r *record) chunks() int64 { return chunksOf(r.keys, r.chunkSize) }

func chunksOf(keys int64, size int) int64 { return (keys + int64(size) - 1) / int64(size) }

// doneKeys is the number of items in done chunks.
func (r *record) doneKeys() int64 {
	n := r.doneChunks * int64(r.chunkSize)
	if r.lastDone {
		n -= r.chunks()*int64(r.chunkSize) - r.keys
	}
	return n
}

// running is the running time so far at now, in µs.
func (r *record) running(now int64) int64 {
	if r.phase == Running && now > r.resumedUs {
		return r.runUs + now - r.resumedUs
	}
	return r.runUs
}

type regReq struct {
	id        string
	keys      int64
	chunkSize int
	staged    bool   // make node's staging area the warm's items
	node      string // the registering node
	by        string
	now       int64 // µs; < 0: the store's own clock (Redis TIME)
}

type claimReq struct {
	id    string
	node  string
	now   int64 // µs; < 0: the store's own clock
	ttlUs int64
}

type claimRes struct {
	missing bool  // the store does not hold the warm
	phase   Phase // after the operation
	chunk   int64 // claim: the chunk handed out, -1 for none
	held    bool  // renew: the node still holds the chunk
	gen     string
}

// restoreReq is what one node knows of a warm the store lost (a Redis
// restarted without persistence) or that another node wrote back: its
// definition, the chunks this node completed (a bitmap, bit c of byte
// c/8 from the most significant bit, as Redis SETBIT numbers them), the
// failures it reported, and the chunks it holds now.
type restoreReq struct {
	rec    record // id, keys, chunkSize, startedBy, by, phase, times
	done   []byte
	held   []int64
	node   string
	ttlUs  int64
	holdUs int64 // a written-back warm hands out no chunk for this long
	known  string
	now    int64
	// maxFailed bounds the failed keys listed.
	maxFailed int
}

// newGen returns a random generation token.
func newGen() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// bitset is a chunk bitmap in Redis's SETBIT order.
type bitset []byte

func (b bitset) has(c int64) bool {
	i := c >> 3
	return i < int64(len(b)) && b[i]&(0x80>>(c&7)) != 0
}

func (b *bitset) set(c int64) bool {
	i := c >> 3
	for int64(len(*b)) <= i {
		*b = append(*b, 0)
	}
	m := byte(0x80 >> (c & 7))
	if (*b)[i]&m != 0 {
		return false
	}
	(*b)[i] |= m
	return true
}
