package serverside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

// DefaultMaxNotices is the most notices one response carries when
// NoticeConfig.MaxNotices is 0.
const DefaultMaxNotices = 16

// NoticeConfig configures NewNotifier.
type NoticeConfig[R any] struct {
	Common[R]
	// Coordinator answers which notices are due; required.
	Coordinator *invalidate.Coordinator
	// Key returns a request's client ID; required.
	Key func(R) (string, error)
	// MaxNotices is the most notices one response carries; 0:
	// DefaultMaxNotices.
	MaxNotices int
	// EpochField names the epoch field in log records, e.g.
	// "Herdcap-Epoch" or "herdcap-epoch metadata".
	EpochField string
}

// Notifier tells a client which invalidation notices it is due. A request
// takes part when it carries the transport's epoch field (the highest
// epoch the client has applied); one without passes untouched. For one
// that does:
//
//   - a malformed epoch (not one value of 1 to 16 digits, or above
//     invalidate's largest epoch) is BadRequest: read as 0, it would tell
//     a broken client to drop everything on every request;
//   - the client ID is the Key function's; a failure is Gone, BadRequest
//     or Internal as for the Admitter;
//   - the coordinator's notices are encoded (at most MaxNotices, and
//     within wire.MaxNoticeField bytes but at least one) with the epoch
//     the client records once it has applied them;
//   - a coordinator error never fails the request: it is logged and the
//     request passes without notices, which come on a later request.
//
// A Notifier is safe for concurrent use.
type Notifier[R any] struct {
	coord *invalidate.Coordinator
	key   func(R) (string, error)
	skip  func(R) bool
	keys  Keys
	max   int
	field string
	log   *logger[R]
	bufs  sync.Pool // *[]invalidate.Notice
}

// NoticeOutcome is a Notifier's answer.
type NoticeOutcome struct {
	Verdict Verdict // Pass, BadRequest, Internal or Gone (the key function ended with the request's context)
	// Value is the notice list to send ("" for none), and Epoch the epoch
	// field to send with it.
	Value, Epoch string
	// Err is the cause of BadRequest and Internal.
	Err error
	// KeyErr reports that Err came from the Key function (else the epoch
	// field was malformed).
	KeyErr bool
}

// NewNotifier returns the Notifier of cfg; an error names the bad field.
func NewNotifier[R any](cfg NoticeConfig[R]) (*Notifier[R], error) {
	if cfg.Coordinator == nil {
		return nil, errors.New("coordinator is nil")
	}
	if cfg.Key == nil {
		return nil, errors.New("key function is nil")
	}
	if cfg.MaxNotices < 0 {
		return nil, fmt.Errorf("MaxNotices must be >= 0, got %d", cfg.MaxNotices)
	}
	n := &Notifier[R]{coord: cfg.Coordinator, key: cfg.Key, skip: cfg.Skip, keys: cfg.Keys, max: cfg.MaxNotices,
		field: cfg.EpochField, log: newLogger(cfg.Common)}
	if n.max == 0 {
		n.max = DefaultMaxNotices
	}
	n.bufs.New = func() any { return new([]invalidate.Notice) }
	return n, nil
}

// maxPooledNotices bounds the buffers kept for reuse.
const maxPooledNotices = 64

// Decide decides r, whose epoch field has the values epoch (present
// reports whether it has the field at all).
func (n *Notifier[R]) Decide(ctx context.Context, r R, epoch []string, present bool) NoticeOutcome {
	if !present {
		return NoticeOutcome{} // a client that takes no part
	}
	if skip, err := n.log.skipped(ctx, r, n.skip); err != nil {
		return NoticeOutcome{Verdict: Internal, Err: err}
	} else if skip {
		return NoticeOutcome{}
	}
	applied, err := wire.ParseEpoch(epoch)
	if err != nil {
		err = fmt.Errorf("malformed %s: %w", n.field, err)
		if n.log.enabled(ctx, slog.LevelDebug) {
			n.log.at(ctx, r, &n.log.input, slog.LevelDebug, "malformed "+n.field+"; answering "+n.log.names.BadRequest,
				slog.Any("error", err))
		}
		return NoticeOutcome{Verdict: BadRequest, Err: err}
	}
	id, err := callKey(n.key, r)
	if err != nil || id == "" {
		v, err := n.log.keyFailure(ctx, r, n.keys, err, "client ID", false)
		return NoticeOutcome{Verdict: v, Err: err, KeyErr: true}
	}
	buf := n.bufs.Get().(*[]invalidate.Notice)
	due, err := n.due(ctx, (*buf)[:0], id, applied)
	var o NoticeOutcome
	if err != nil {
		if !gone(ctx, err) {
			n.log.at(ctx, r, &n.log.failed, slog.LevelError, "coordinator failed; serving without notices",
				slog.Bool("unavailable", errors.Is(err, invalidate.ErrUnavailable)), slog.Any("error", err))
		}
	} else if len(due) > 0 {
		v, e := wire.NoticeField(due, n.max)
		o.Value, o.Epoch = v, strconv.FormatUint(e, 10)
	}
	if cap(due) <= maxPooledNotices {
		clear(due)
		*buf = due[:0]
		n.bufs.Put(buf)
	}
	return o
}

// due appends to dst the notices due to client id, which has applied
// epoch applied. It is the one place the transports ask the coordinator.
func (n *Notifier[R]) due(ctx context.Context, dst []invalidate.Notice, id string, applied uint64) ([]invalidate.Notice, error) {
	return n.coord.AppendDue(ctx, dst, id, applied)
}
