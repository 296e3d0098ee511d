package httpmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

// DefaultMaxNotices is the most notices Invalidate puts in one response
// unless WithMaxNotices says otherwise.
const DefaultMaxNotices = 16

// NoticeSource is what Invalidate needs of an *invalidate.Coordinator: the
// notices due to a client given the epoch it has applied, appended to dst
// (see invalidate.Coordinator.AppendDue). It is called concurrently.
type NoticeSource interface {
	AppendDue(ctx context.Context, dst []invalidate.Notice, clientID string, applied uint64) ([]invalidate.Notice, error)
}

// WithMaxNotices sets the most notices Invalidate puts in one response
// (default DefaultMaxNotices, at least 1). Notices are also added only
// while the HeaderInvalidate value stays within 4 KiB, but always at least
// one. Holding notices back is safe: they come in epoch order, the client
// records the highest epoch it was given, and its next request gets the
// rest. Applies to Invalidate only.
func WithMaxNotices(n int) Option {
	return Option{name: "WithMaxNotices", scope: forInvalidate, apply: func(c *config) error {
		if n < 1 {
			return fmt.Errorf("max notices must be >= 1, got %d", n)
		}
		c.maxNotices = n
		return nil
	}}
}

// Invalidate returns middleware that tells clients, on their ordinary
// responses, which cached data to drop, as an invalidate.Coordinator
// releases it cohort by cohort. Its error wraps ErrInvalidOption and names
// the bad option (or says the source is nil).
//
// A request takes part when it carries HeaderEpoch, the highest epoch the
// client has applied; requests without it pass through untouched (they are
// from clients that do not speak herdcap, such as browsers). For one that
// does, the middleware finds the client ID (HeaderClient, else the client
// IP address; or WithKeyFunc), asks the source which notices are due
// (AppendDue, from the coordinator's cache: no store round trip on most
// requests, no allocation when none is due), and when some are, sets
// HeaderInvalidate and HeaderEpoch on the response before calling the next
// handler. At most WithMaxNotices notices go in one response; the client
// gets the rest on its next request. The fields are set whatever status
// the handler then writes: a notice is valid on any response, and
// delivering it twice is harmless once the client records its epoch.
//
// Bad input is answered, never guessed at:
//
//   - a malformed HeaderEpoch (not 1 to 16 digits, above
//     invalidate.MaxEpoch, or repeated) or HeaderClient gets 400 Bad
//     Request, and the handler does not run. Ignoring a bad epoch would be
//     worse either way: read as 0, it would tell a client with a broken
//     epoch to drop everything on every request (the storm herdcap exists
//     to prevent); skipped, it would hide the client's bug while it misses
//     every invalidation. herdcap's own clients never send one.
//   - a key-function error is answered as for RateLimit (400 for ErrNoKey,
//     else 500).
//
// A coordinator error (its store unreachable with nothing cached, say)
// never fails the request: it is logged (WithLogger, throttled) and the
// request is served without notices, which the client will get on a later
// request. Delivery only ever lags; it never fails open into "drop
// everything".
//
// Install Invalidate inside Admit and RateLimit, so that refused requests
// are refused before any notice is computed. The middleware is safe for
// concurrent use.
func Invalidate(src NoticeSource, opts ...Option) (func(http.Handler) http.Handler, error) {
	if src == nil {
		return nil, errors.New("httpmw: Invalidate: notice source is nil")
	}
	c, err := buildConfig(forInvalidate, opts)
	if err != nil {
		return nil, err
	}
	m := &invalidator{
		src:   src,
		key:   sessionKeyFunc(&c),
		max:   c.maxNotices,
		slog:  sessionLog{log: c.logger, name: "httpmw: Invalidate"},
		cache: sync.Pool{New: func() any { return new(noticeBuf) }},
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(next, w, r)
		})
	}, nil
}

type invalidator struct {
	src   NoticeSource
	key   func(*http.Request) (string, error)
	max   int
	slog  sessionLog
	cache sync.Pool // *noticeBuf
}

// noticeBuf is a reusable AppendDue buffer.
type noticeBuf struct{ n []invalidate.Notice }

// maxPooledNotices bounds the buffers kept for reuse.
const maxPooledNotices = 64

func (m *invalidator) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	lines, ok := r.Header[HeaderEpoch]
	if !ok {
		next.ServeHTTP(w, r)
		return
	}
	applied, err := wire.ParseEpoch(lines)
	if err != nil {
		m.slog.badInput(r, "malformed "+HeaderEpoch, err)
		writeText(w, http.StatusBadRequest)
		return
	}
	id, err := m.key(r)
	if err != nil || id == "" {
		m.slog.keyFailed(w, r, err)
		return
	}
	buf := m.cache.Get().(*noticeBuf)
	notices, err := m.src.AppendDue(r.Context(), buf.n[:0], id, applied)
	if err != nil {
		m.failed(r, err)
	} else if len(notices) > 0 {
		h := w.Header()
		v, epoch := wire.NoticeField(notices, m.max)
		h[HeaderInvalidate] = []string{v}
		h[HeaderEpoch] = []string{strconv.FormatUint(epoch, 10)}
	}
	if cap(notices) <= maxPooledNotices {
		clear(notices)
		buf.n = notices[:0]
		m.cache.Put(buf)
	}
	next.ServeHTTP(w, r)
}

// failed logs a coordinator error; the request goes on without notices.
func (m *invalidator) failed(r *http.Request, err error) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return // the client has gone
	}
	if n, ok := m.slog.failLog.Allow(); ok {
		m.slog.log.LogAttrs(ctx, slog.LevelError, "httpmw: Invalidate: coordinator failed; serving without notices",
			slog.Bool("unavailable", errors.Is(err, invalidate.ErrUnavailable)),
			slog.Any("error", err), slog.Uint64("suppressed", n))
	}
}
