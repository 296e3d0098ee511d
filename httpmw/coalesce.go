package httpmw

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdcap/herdcap/internal/serverside"
)

// CoalescedHeader is the field Coalesce adds, with the value "1", to the
// responses it replays to waiters when CoalesceConfig.MarkReplays is set.
const CoalescedHeader = "Herdcap-Coalesced"

// CoalesceConfig configures Coalesce. The zero value coalesces GET and HEAD
// requests without a body, Range, Authorization or Cookie, keyed by method,
// host, path and raw query, sharing responses of up to 1 MiB, with the
// leader's handler bounded by 10 s, at most 10,000 keys in flight and
// 1,000 waiters per key.
//
// Requests that carry credentials (Authorization, Cookie) are not
// coalesced by default because their responses may depend on who asks:
// one user's response must never reach another. Range requests are not,
// because their responses depend on the range; requests with a body are
// not, because the key does not read it.
type CoalesceConfig struct {
	// Key, if set, replaces the default key (method, host, path, raw query
	// and the Vary fields' values): requests with the same non-empty key
	// share one run of the handler; "" leaves the request uncoalesced. It
	// is called concurrently, for GET and HEAD requests only and after the
	// credentials, Range and body checks; a panic leaves the request
	// uncoalesced. It must include whatever the response depends on.
	Key func(*http.Request) string
	// Vary names request header fields whose values the default key
	// includes (Accept, Accept-Encoding, ...): the fields the handler's
	// response varies by.
	Vary []string
	// Credentials coalesces requests that carry Authorization or Cookie
	// too. The default key then includes both fields' values, so only
	// requests with the same credentials share a response.
	Credentials bool
	// Ranges coalesces requests that carry Range too; the default key then
	// includes it.
	Ranges bool
	// Bodies coalesces requests with a body too. The default key does not
	// read bodies, so Bodies requires Key.
	Bodies bool
	// MaxBody is the largest response body shared, in bytes. The leader of
	// a larger response streams it to its own client, and each waiter runs
	// the handler itself: a body is never truncated. If MaxBody is 0,
	// 1 MiB; it must not be negative.
	MaxBody int64
	// Timeout bounds the leader's handler, whose request context keeps
	// the values of the leader's but not its cancellation (see Coalesce).
	// If Timeout is 0, 10 s; it must not be negative.
	Timeout time.Duration
	// MaxKeys is the most keys in flight at once; a request of another key
	// runs uncoalesced. If MaxKeys is 0, 10,000; it must not be negative.
	MaxKeys int
	// MaxWaiters is the most requests waiting on one key's leader; one
	// more runs uncoalesced. If MaxWaiters is 0, 1,000; it must not be
	// negative.
	MaxWaiters int
	// MarkReplays adds Herdcap-Coalesced: 1 to replayed responses, so a
	// client or a test can tell them. Off, a replayed response carries
	// nothing Coalesce adds.
	MarkReplays bool
}

// defaultMaxBody is CoalesceConfig.MaxBody's default.
const defaultMaxBody = 1 << 20

// replay is a leader's response as its waiters get it.
type replay struct {
	status int
	header http.Header
	body   []byte
}

// coalescer is Coalesce's middleware state.
type coalescer struct {
	cfg  CoalesceConfig
	c    *serverside.Coalescer[*replay]
	next http.Handler
}

// Coalesce returns middleware that runs the next handler once for
// concurrent identical GET and HEAD requests, or an error wrapping
// ErrInvalidConfig that names the bad field.
// The middleware is safe for concurrent use.
//
// The first request of a key leads: it runs the handler, writing into a
// buffer, and every request of that key that arrives while it runs waits
// and then gets the same status, header fields (the handler's; those set
// by middleware further out stay each request's own) and body. The leader
// gets the same replay. The leader's handler runs on the leader's
// goroutine, on a request context that keeps its values but not its
// cancellation, bounded by CoalesceConfig.Timeout: the leader's client
// going away does not fail the waiters. A waiter whose client goes away
// stops waiting and writes nothing; the leader goes on.
//
// A response is not shared, and each waiter runs the handler itself, when
// its body grows past MaxBody (the leader's buffered start is written to
// its client, the rest streams, and its handler's context takes back the
// client's cancellation) or when it is private to the leader's client
// (it sets Set-Cookie, or Cache-Control private or no-store). While the
// body is buffered, Flush does nothing; the writer offers no Hijack.
//
// A panic in the leader's handler goes on to net/http as usual (which
// aborts the leader's response); every waiter gets 500 Internal Server
// Error. Past MaxKeys keys in flight, or MaxWaiters waiters on a key, a
// request runs uncoalesced.
func Coalesce(cfg CoalesceConfig) (func(http.Handler) http.Handler, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: httpmw.CoalesceConfig."+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg.MaxBody < 0:
		return nil, bad("MaxBody must be >= 0, got %d", cfg.MaxBody)
	case cfg.Bodies && cfg.Key == nil:
		return nil, bad("Bodies requires Key: the default key does not read bodies")
	}
	for i, v := range cfg.Vary {
		if v == "" {
			return nil, bad("Vary[%d] is empty", i)
		}
	}
	b, err := serverside.CoalesceBounds{Timeout: cfg.Timeout, MaxKeys: cfg.MaxKeys, MaxWaiters: cfg.MaxWaiters}.Resolve("httpmw.CoalesceConfig")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = defaultMaxBody
	}
	cfg.Vary = slices.Clone(cfg.Vary)
	for i, v := range cfg.Vary {
		cfg.Vary[i] = http.CanonicalHeaderKey(v)
	}
	c := serverside.NewCoalescer[*replay](b)
	return func(next http.Handler) http.Handler {
		return &coalescer{cfg: cfg, c: c, next: next}
	}, nil
}

// ServeHTTP leads, waits or passes the request through.
func (m *coalescer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		m.next.ServeHTTP(w, r) // not idempotent and safe: never coalesced
		return
	}
	bp := keyBufs.Get().(*[]byte)
	key, ok := m.key((*bp)[:0], r)
	var f *serverside.Flight[*replay]
	var leader bool
	if ok {
		f, leader = m.c.Join(key)
	}
	*bp = key
	keyBufs.Put(bp)
	switch {
	case f == nil:
		m.next.ServeHTTP(w, r)
	case leader:
		m.lead(w, r, f)
	default:
		m.wait(w, r, f)
	}
}

// keyBufs holds the buffers keys are built in.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// key appends the key of r, a GET or HEAD, to b, and reports false if r
// is not to be coalesced.
func (m *coalescer) key(b []byte, r *http.Request) ([]byte, bool) {
	h := r.Header
	if !m.cfg.Credentials && (h["Authorization"] != nil || h["Cookie"] != nil) ||
		!m.cfg.Ranges && h["Range"] != nil ||
		!m.cfg.Bodies && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
		return b, false
	}
	if m.cfg.Key != nil {
		k := m.userKey(r)
		return append(b, k...), k != ""
	}
	b = append(b, r.Method...)
	b = append(b, 0)
	b = append(b, r.Host...)
	b = append(b, 0)
	b = append(b, r.URL.EscapedPath()...)
	b = append(b, '?')
	b = append(b, r.URL.RawQuery...)
	b = keyFields(b, h, m.cfg.Vary)
	if m.cfg.Credentials {
		b = keyFields(b, h, credentialFields)
	}
	if m.cfg.Ranges {
		b = keyFields(b, h, rangeFields)
	}
	return b, true
}

// The fields the default key adds under Credentials and Ranges.
var (
	credentialFields = []string{"Authorization", "Cookie"}
	rangeFields      = []string{"Range"}
)

// keyFields appends the values of names to a key, each value
// length-prefixed so that no two lists of values give one key.
func keyFields(b []byte, h http.Header, names []string) []byte {
	for _, n := range names {
		b = append(b, 0)
		for _, v := range h[n] {
			b = strconv.AppendInt(b, int64(len(v)), 10)
			b = append(b, ':')
			b = append(b, v...)
		}
	}
	return b
}

// userKey calls CoalesceConfig.Key under recover.
func (m *coalescer) userKey(r *http.Request) (key string) {
	defer func() {
		if recover() != nil {
			key = ""
		}
	}()
	return m.cfg.Key(r)
}

// lead runs the handler for the flight f and replays its response to w.
func (m *coalescer) lead(w http.ResponseWriter, r *http.Request, f *serverside.Flight[*replay]) {
	ctx, cancel := serverside.Detach(r.Context(), m.c.Timeout())
	defer cancel()
	cw := &captureWriter{w: w, header: make(http.Header), max: m.cfg.MaxBody}
	cw.overflow = func() {
		m.c.Finish(f, nil, serverside.Declined)
		stop := context.AfterFunc(r.Context(), cancel)
		cw.stop = stop
	}
	ended := false
	defer func() {
		if cw.stop != nil {
			cw.stop()
		}
		if !ended {
			m.c.Finish(f, nil, serverside.Panicked) // the panic goes on
		}
	}()
	m.next.ServeHTTP(cw, r.WithContext(ctx))
	ended = true
	if cw.streaming {
		return
	}
	rep := cw.replay()
	if private(rep.header) {
		m.c.Finish(f, nil, serverside.Declined)
	} else {
		m.c.Finish(f, rep, serverside.Shared)
	}
	rep.write(w, false)
}

// private reports whether a response is its client's own.
func private(h http.Header) bool {
	if h["Set-Cookie"] != nil {
		return true
	}
	for _, v := range h["Cache-Control"] {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "no-store" || d == "private" || strings.HasPrefix(d, "private=") {
				return true
			}
		}
	}
	return false
}

// wait waits for f's leader and answers as its outcome says.
func (m *coalescer) wait(w http.ResponseWriter, r *http.Request, f *serverside.Flight[*replay]) {
	rep, end, err := f.Wait(r.Context())
	if err != nil {
		return // the client is gone
	}
	switch end {
	case serverside.Shared:
		rep.write(w, m.cfg.MarkReplays)
	case serverside.Declined:
		m.next.ServeHTTP(w, r)
	default:
		writeText(w, http.StatusInternalServerError)
	}
}

// write replays the response to w.
func (rep *replay) write(w http.ResponseWriter, mark bool) {
	h := w.Header()
	for k, v := range rep.header {
		h[k] = slices.Clip(v) // shared: an Add further out must copy
	}
	if mark {
		h.Set(CoalescedHeader, "1")
	}
	w.WriteHeader(rep.status)
	_, _ = w.Write(rep.body)
}

// captureWriter buffers the leader's response, up to max bytes of body;
// past that it writes what it holds to the leader's client and streams the
// rest.
type captureWriter struct {
	w         http.ResponseWriter
	header    http.Header
	status    int
	body      []byte
	max       int64
	streaming bool
	overflow  func()
	stop      func() bool
}

// Header returns the handler's header fields.
func (c *captureWriter) Header() http.Header {
	if c.streaming {
		return c.w.Header()
	}
	return c.header
}

// WriteHeader records the status (informational ones are dropped while
// buffering).
func (c *captureWriter) WriteHeader(code int) {
	if c.streaming {
		c.w.WriteHeader(code)
		return
	}
	if c.status == 0 && code >= 200 {
		c.status = code
	}
}

// Write buffers p, or streams once the body outgrows max.
func (c *captureWriter) Write(p []byte) (int, error) {
	if c.streaming {
		return c.w.Write(p)
	}
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if int64(len(c.body)+len(p)) <= c.max {
		c.body = append(c.body, p...)
		return len(p), nil
	}
	c.overflow()
	rep := c.replay()
	c.streaming = true
	c.body = nil
	rep.write(c.w, false)
	return c.w.Write(p)
}

// Flush flushes the leader's client's response once streaming.
func (c *captureWriter) Flush() {
	if f, ok := c.w.(http.Flusher); ok && c.streaming {
		f.Flush()
	}
}

// replay returns what was buffered.
func (c *captureWriter) replay() *replay {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return &replay{status: c.status, header: c.header, body: c.body}
}
