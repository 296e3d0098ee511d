// Package clientcore is the one client core of herdcap's transports: a
// client's session (its ID, the invalidation epoch it has applied, its
// ticket, and the notices it applies) and the retry decision of its calls.
// httpmw.Transport and grpcmw.Client map their header fields and metadata
// onto a Client; the simulator's clients take the retry decision alone
// (Retrier).
package clientcore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/logthrottle"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter/retry"
)

// Fields names the herdcap fields in a transport's maps: HTTP header
// fields in their canonical form, or gRPC metadata keys in lower case.
type Fields struct {
	Client     string // request: the client ID
	Epoch      string // request: the applied epoch
	Ticket     string // both: the session's ticket
	Invalidate string // response: the notices
}

// Config configures New. Its first fields are those of the transports'
// configs, which pass them on; the transport sets Fields and Name.
type Config struct {
	// ClientID is sent as the client's ID: 1 to wire.MaxClientIDLen bytes
	// of visible ASCII other than the comma. If ClientID is "", none is
	// sent, and servers identify the client by its address.
	ClientID string
	// OnInvalidate, if set, makes the client take part in invalidation:
	// it sends its applied epoch, and OnInvalidate is called with each
	// notice it is given, in epoch order, once, never for two notices at
	// once and never under a lock, before the notice's epoch is recorded
	// as applied.
	OnInvalidate func(invalidate.Notice)
	// Applied is the epoch the client starts from, at most
	// invalidate.MaxEpoch.
	Applied uint64
	// Retry bounds the retries of each call; see retry.Policy for its
	// defaults. A nil Retry.Budget is a budget of the Client's own.
	Retry retry.Policy
	// Clock is where the Client reads the time and sleeps between
	// attempts. If Clock is nil, the system clock.
	Clock Clock
	// Logger receives a Warn record, at most one a second, when a
	// response carries a malformed notice list. If Logger is nil, nothing
	// is logged.
	Logger *slog.Logger

	// Fields names the transport's fields.
	Fields Fields
	// Name starts the log messages, e.g. "httpmw: Transport".
	Name string
}

// Client is one client's session and retry decision, shared by the
// goroutines of its calls.
//
// Session: SetFields writes the client ID, the applied epoch (if the
// client takes part in invalidation) and the ticket (if it has one) into
// an outgoing request's fields, replacing what was there; Observe keeps
// a ticket from a response and hands its notices to Config.OnInvalidate
// through a wire.NoticeQueue: each once, in epoch order, one at a time,
// never under a lock (when concurrent responses carry notices, one of
// their goroutines applies them all and the others return at once).
// ResetSession forgets the ticket.
//
// Retries: after each failed attempt of a call the transport asks Decide
// (which spends from the retry budget) and then Sleeps for the wait, which
// ends early when the call's context is done; after a success it tells
// Succeeded. A Client is safe for concurrent use.
type Client struct {
	clientID     string
	onInvalidate func(invalidate.Notice)
	fields       Fields
	name         string
	log          *slog.Logger
	clock        Clock
	retrier      Retrier
	budget       *retry.Budget

	ticket  atomic.Pointer[string] // nil or "": none
	applied atomic.Uint64
	queue   wire.NoticeQueue
	badLog  logthrottle.Throttle
}

// New returns a Client. An invalid field of cfg is an error that names it
// as the transports' configs do ("ClientID must be ...", "Retry.MaxWait
// must be ..."); the transport prefixes its config's name.
func New(cfg Config) (*Client, error) {
	if cfg.ClientID != "" {
		if v, err := wire.ParseClientID([]string{cfg.ClientID}); err != nil || v != cfg.ClientID {
			return nil, fmt.Errorf("ClientID must be 1 to %d bytes of visible ASCII other than the comma, got %q",
				wire.MaxClientIDLen, truncate(cfg.ClientID))
		}
	}
	if cfg.Applied > invalidate.MaxEpoch {
		return nil, fmt.Errorf("Applied must be at most invalidate.MaxEpoch (%d), got %d", uint64(invalidate.MaxEpoch), cfg.Applied)
	}
	r, err := NewRetrier(cfg.Retry)
	if err != nil {
		return nil, err
	}
	c := &Client{clientID: cfg.ClientID, onInvalidate: cfg.OnInvalidate, fields: cfg.Fields, name: cfg.Name,
		log: cfg.Logger, clock: cfg.Clock, retrier: r, budget: cfg.Retry.Budget}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = sysclock.Clock{}
	}
	if c.budget == nil {
		if c.budget, err = retry.NewBudget(defaultTokens, defaultTokenRatio); err != nil {
			return nil, err
		}
	}
	c.applied.Store(cfg.Applied)
	return c, nil
}

// truncate shortens a long value for an error message.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Applied returns the highest epoch the client has applied.
func (c *Client) Applied() uint64 { return c.applied.Load() }

// Ticket returns the ticket of the client's session, or "".
func (c *Client) Ticket() string {
	if p := c.ticket.Load(); p != nil {
		return *p
	}
	return ""
}

// ResetSession forgets the ticket, so that the next call starts a new
// session.
func (c *Client) ResetSession() { c.ticket.Store(nil) }

// Now returns the time on the Client's clock.
func (c *Client) Now() time.Time { return c.clock.Now() }

// SetFields writes the client's fields into m, an outgoing request's
// header or metadata: the client ID, the applied epoch if the client takes
// part in invalidation, the ticket if it has one. A field the client does
// not send is deleted from m.
func (c *Client) SetFields(m map[string][]string) {
	set(m, c.fields.Client, c.clientID)
	epoch := ""
	if c.onInvalidate != nil {
		epoch = strconv.FormatUint(c.applied.Load(), 10)
	}
	set(m, c.fields.Epoch, epoch)
	set(m, c.fields.Ticket, c.Ticket())
}

// set sets m[k] to the one value v, or deletes it if v is "".
func set(m map[string][]string, k, v string) {
	if v == "" {
		delete(m, k)
	} else {
		m[k] = []string{v}
	}
}

// Observe reads m, a response's header or metadata (gRPC: its header or its
// trailer): it keeps a ticket (one value shaped like one), and applies the
// notices, if the client takes part in invalidation. A malformed notice
// list is applied up to its first fault, and logged.
func (c *Client) Observe(ctx context.Context, m map[string][]string) {
	if len(m) == 0 {
		return
	}
	if vals := m[c.fields.Ticket]; len(vals) == 1 && wire.TokenShaped(vals[0]) {
		t := vals[0]
		c.ticket.Store(&t)
	}
	if c.onInvalidate == nil {
		return
	}
	vals := m[c.fields.Invalidate]
	if len(vals) == 0 {
		return
	}
	notices, err := wire.ParseNotices(nil, vals)
	if err != nil {
		if n, ok := c.badLog.Allow(); ok {
			c.log.LogAttrs(ctx, slog.LevelWarn, c.name+": malformed "+c.fields.Invalidate+"; applying the notices before the fault",
				slog.Int("applied", len(notices)), slog.Any("error", err), slog.Uint64("suppressed", n))
		}
	}
	c.queue.Deliver(notices, &c.applied, c.onInvalidate)
}

// Decide is Retrier.Decide with the Client's policy and retry budget: the
// wait before the next attempt of a call after its failed attempt number
// attempt, or false to give up. Call it once per failed attempt that
// counts against the budget (a refusal, a connection fault).
func (c *Client) Decide(attempt int, waited time.Duration, h Hint, resend bool) (time.Duration, bool) {
	return c.retrier.Decide(c.budget, attempt, waited, h, resend)
}

// Succeeded tells the retry budget that an attempt succeeded.
func (c *Client) Succeeded() { c.budget.RecordSuccess() }

// Sleep waits d on the Client's clock, or until ctx is done, and then
// returns ctx's error.
func (c *Client) Sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, c.clock, d) }
