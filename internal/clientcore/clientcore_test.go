package clientcore

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

// fields are the field names of these tests (httpmw's).
var fields = Fields{Client: "Herdcap-Client", Epoch: "Herdcap-Epoch", Ticket: "Herdcap-Resume", Invalidate: "Herdcap-Invalidate"}

// ticket returns a value shaped like a ticket (wire.TokenShaped), made of c.
func ticket(t *testing.T, c byte) string {
	t.Helper()
	for n := 1; n <= 1024; n++ {
		if s := strings.Repeat(string(c), n); wire.TokenShaped(s) {
			return s
		}
	}
	t.Fatal("no ticket length")
	return ""
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Fields, cfg.Name = fields, "test: Client"
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// noticeField encodes notices as a response's notice list.
func noticeField(ns ...invalidate.Notice) []string {
	v, _ := wire.NoticeField(ns, len(ns))
	return []string{v}
}

func TestNewRejectsBadSession(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ClientID: " "}, `ClientID must be 1 to 256 bytes of visible ASCII other than the comma, got " "`},
		{Config{ClientID: "a,b"}, `ClientID must be 1 to 256 bytes of visible ASCII other than the comma, got "a,b"`},
		{Config{ClientID: " a"}, `got " a"`},
		{Config{ClientID: strings.Repeat("x", wire.MaxClientIDLen+1)}, `got "` + strings.Repeat("x", 32) + `..."`},
		{Config{Applied: invalidate.MaxEpoch + 1}, fmt.Sprintf("Applied must be at most invalidate.MaxEpoch (%d), got %d", uint64(invalidate.MaxEpoch), uint64(invalidate.MaxEpoch)+1)},
	} {
		_, err := New(tc.cfg)
		assert.ErrorContains(t, err, tc.want)
	}
	c, err := New(Config{ClientID: strings.Repeat("x", wire.MaxClientIDLen), Applied: invalidate.MaxEpoch})
	require.NoError(t, err)
	assert.Equal(t, uint64(invalidate.MaxEpoch), c.Applied())
}

// TestSetFields: the client's fields replace the request's, and a field the
// client does not send is removed.
func TestSetFields(t *testing.T) {
	stale := func() map[string][]string {
		return map[string][]string{"Herdcap-Client": {"someone"}, "Herdcap-Epoch": {"99"}, "Herdcap-Resume": {"stale"}, "X-Other": {"kept"}}
	}
	anon := newClient(t, Config{})
	m := stale()
	anon.SetFields(m)
	assert.Equal(t, map[string][]string{"X-Other": {"kept"}}, m, "no ID, no epoch without OnInvalidate, no ticket yet")

	c := newClient(t, Config{ClientID: "client-7", Applied: 42, OnInvalidate: func(invalidate.Notice) {}})
	m = stale()
	c.SetFields(m)
	assert.Equal(t, map[string][]string{"Herdcap-Client": {"client-7"}, "Herdcap-Epoch": {"42"}, "X-Other": {"kept"}}, m)

	tk := ticket(t, 'A')
	c.Observe(t.Context(), map[string][]string{"Herdcap-Resume": {tk}})
	c.SetFields(m)
	assert.Equal(t, []string{tk}, m["Herdcap-Resume"])
	m["Herdcap-Client"][0] = "changed by someone downstream"
	c.SetFields(m)
	assert.Equal(t, []string{"client-7"}, m["Herdcap-Client"], "each request gets values of its own")
}

// TestTicket: a ticket is kept from any response that carries exactly one
// value shaped like one, replaced by the next, and forgotten on
// ResetSession; anything else leaves the ticket as it was.
func TestTicket(t *testing.T) {
	c := newClient(t, Config{})
	ctx := t.Context()
	a, b := ticket(t, 'A'), ticket(t, 'b')
	assert.Empty(t, c.Ticket())
	c.Observe(ctx, nil)
	c.Observe(ctx, map[string][]string{"Herdcap-Resume": {a}})
	assert.Equal(t, a, c.Ticket())
	for _, bad := range [][]string{
		{b, b},                        // two values
		{a[1:]},                       // too short
		{a + "A"},                     // too long
		{strings.Repeat("!", len(a))}, // not base64url
		{""},
		{},
	} {
		c.Observe(ctx, map[string][]string{"Herdcap-Resume": bad})
		assert.Equal(t, a, c.Ticket(), "%q is no ticket", bad)
	}
	c.Observe(ctx, map[string][]string{"Herdcap-Resume": {b}})
	assert.Equal(t, b, c.Ticket(), "the newest ticket is kept")
	c.ResetSession()
	assert.Empty(t, c.Ticket())
	c.Observe(ctx, map[string][]string{"herdcap-resume": {a}})
	assert.Empty(t, c.Ticket(), "field names are the transport's, exactly")
}

func TestObserveNotices(t *testing.T) {
	var got []invalidate.Notice
	c := newClient(t, Config{Applied: 5, OnInvalidate: func(n invalidate.Notice) { got = append(got, n) }})
	ctx := t.Context()
	n := func(e uint64) invalidate.Notice {
		return invalidate.Notice{RolloutID: fmt.Sprint("r", e), Scope: fmt.Sprint("s", e), Epoch: e}
	}
	c.Observe(ctx, map[string][]string{"Herdcap-Invalidate": noticeField(n(4), n(5), n(6), n(7))})
	assert.Equal(t, []invalidate.Notice{n(6), n(7)}, got, "none at or below the applied epoch")
	assert.EqualValues(t, 7, c.Applied())
	c.Observe(ctx, map[string][]string{"Herdcap-Invalidate": noticeField(n(7))})
	assert.Len(t, got, 2, "a notice is applied once")
	c.Observe(ctx, map[string][]string{"Herdcap-Invalidate": noticeField(n(9))})
	c.Observe(ctx, map[string][]string{"Herdcap-Invalidate": noticeField(n(8))})
	assert.Equal(t, []invalidate.Notice{n(6), n(7), n(9)}, got, "an epoch below one applied is skipped")
	assert.EqualValues(t, 9, c.Applied())

	// A client outside invalidation applies nothing.
	off := newClient(t, Config{})
	off.Observe(ctx, map[string][]string{"Herdcap-Invalidate": noticeField(n(9))})
	assert.Zero(t, off.Applied())
}

// TestObserveMalformedNotices: a malformed list is applied up to its first
// fault, and logged at most once a second.
func TestObserveMalformedNotices(t *testing.T) {
	var logs logtest.Buffer
	var got []string
	c := newClient(t, Config{OnInvalidate: func(n invalidate.Notice) { got = append(got, n.Scope) }, Logger: logtest.NewLogger(&logs)})
	for range 3 {
		c.Observe(t.Context(), map[string][]string{"Herdcap-Invalidate": {`"a";epoch=5;id="r5", "b";epoch=oops;id="r6", "c";epoch=7;id="r7"`}})
	}
	assert.Equal(t, []string{"a"}, got)
	assert.EqualValues(t, 5, c.Applied())
	assert.Equal(t, 1, strings.Count(logs.String(), "test: Client: malformed Herdcap-Invalidate; applying the notices before the fault"), logs.String())
	assert.Contains(t, logs.String(), "applied=1")
}

// TestObserveConcurrentNotices: responses observed by many goroutines at
// once, each with overlapping windows of notices, are applied each once, in
// epoch order, by one goroutine at a time (run with -race). Each goroutine
// observes every epoch from 1 up, so none is skipped for being below one
// applied earlier.
func TestObserveConcurrentNotices(t *testing.T) {
	const goroutines, epochs, window = 8, 300, 12
	var (
		running atomic.Int32
		overlap atomic.Bool
		got     []uint64 // written only by the callback, which never overlaps itself
	)
	c := newClient(t, Config{OnInvalidate: func(n invalidate.Notice) {
		if running.Add(1) != 1 {
			overlap.Store(true)
		}
		got = append(got, n.Epoch)
		running.Add(-1)
	}})
	var wg sync.WaitGroup
	for g := range goroutines {
		step := uint64(1 + g%window) // each goroutine overlaps its windows differently
		wg.Go(func() {
			for start := uint64(1); start <= epochs; start += step {
				var ns []invalidate.Notice
				for e := start; e < start+window && e <= epochs; e++ {
					ns = append(ns, invalidate.Notice{RolloutID: "r", Scope: "s", Epoch: e})
				}
				c.Observe(t.Context(), map[string][]string{"Herdcap-Invalidate": noticeField(ns...)})
				c.SetFields(map[string][]string{}) // reads the applied epoch meanwhile
			}
		})
	}
	wg.Wait()
	want := make([]uint64, epochs)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	assert.False(t, overlap.Load(), "the callback ran twice at once")
	assert.Equal(t, want, got, "every notice once, in epoch order")
	assert.EqualValues(t, epochs, c.Applied())
}

// TestObserveCallbackMayCallBack: the callback runs under no lock, so it
// may use the Client (send a request through its transport).
func TestObserveCallbackMayCallBack(t *testing.T) {
	var c *Client
	var seen []string
	c = newClient(t, Config{ClientID: "me", OnInvalidate: func(n invalidate.Notice) {
		m := map[string][]string{}
		c.SetFields(m)
		c.Observe(t.Context(), map[string][]string{"Herdcap-Resume": {ticket(t, 'Z')}})
		seen = append(seen, m["Herdcap-Epoch"][0])
	}})
	c.Observe(t.Context(), map[string][]string{"Herdcap-Invalidate": noticeField(
		invalidate.Notice{RolloutID: "r", Scope: "a", Epoch: 1}, invalidate.Notice{RolloutID: "r", Scope: "b", Epoch: 2})})
	assert.Equal(t, []string{"0", "1"}, seen, "each notice's epoch is recorded after its callback")
	assert.Equal(t, ticket(t, 'Z'), c.Ticket())
}
