package invalidate

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingStore counts snapshot reads and reports a corrupt record in
// each, so that installing one logs (the coordinator's logger is user
// code).
type countingStore struct {
	*MemoryStore
	reads atomic.Int32
}

func (s *countingStore) snapshot(ctx context.Context, known version) (snapshot, error) {
	s.reads.Add(1)
	snap, err := s.MemoryStore.snapshot(ctx, known)
	snap.corrupt = 1
	return snap, err
}

// blockingHandler blocks every record until release is closed.
type blockingHandler struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) Handle(context.Context, slog.Record) error {
	h.once.Do(func() { close(h.entered) })
	<-h.release
	return nil
}
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler      { return h }

// TestColdReadHoldsNoLock: the first read of the store is shared by the
// callers that arrive meanwhile (one store read), and no lock is held
// across it or across the logging it does: while the logger is stuck, a
// caller with a deadline gets its context's error at its deadline instead
// of queueing on a mutex behind the logger.
func TestColdReadHoldsNoLock(t *testing.T) {
	st := &countingStore{MemoryStore: NewMemoryStore()}
	h := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{})}
	c := newNode(t, st, newVClock(t0), Config{Logger: slog.New(h)})
	released := false
	defer func() {
		if !released {
			close(h.release)
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 5)
	wg.Add(1)
	go func() { // the first caller: reads, then logs and is stuck there
		defer wg.Done()
		_, err := c.AppendDue(context.Background(), nil, "first", 0)
		errs <- err
	}()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second): // generous: a loaded -race CI machine
		t.Fatal("the first read never logged")
	}

	// A caller with a deadline is not held behind the stuck logger. The
	// figure that matters is the deadline (100 ms); 3 s allows for a
	// loaded 2-core -race machine, and is still far below the logger's
	// hold, which lasts until the end of this test.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hurried := make(chan error, 1)
	go func() {
		_, err := c.AppendDue(ctx, nil, "hurried", 0)
		hurried <- err
	}()
	select {
	case err := <-hurried:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(3 * time.Second):
		t.Fatal("a caller with a deadline is queued behind the stuck logger")
	}

	for range 4 { // callers without a deadline wait for the same read
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.AppendDue(context.Background(), nil, "patient", 0)
			errs <- err
		}()
	}
	close(h.release)
	released = true
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int32(1), st.reads.Load(), "one shared first read")
}
