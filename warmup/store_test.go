package warmup

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// Both stores hand out, renew, take over and complete claims alike, at the
// times the caller gives (µs).
func TestStoreClaimsConform(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(*testing.T) Store { return NewMemoryStore() },
		"redis": func(t *testing.T) Store {
			s, err := NewRedisStore(fleet.Redis{Client: redistest.Start(t).Client(t), Timeout: time.Second})
			require.NoError(t, err)
			return s
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := mk(t)
			rec, created, err := s.register(ctx, regReq{id: "w", keys: 25, chunkSize: 10, by: "a", node: "a", now: 1000})
			require.NoError(t, err)
			require.True(t, created)
			assert.EqualValues(t, 3, rec.chunks())
			_, created, err = s.register(ctx, regReq{id: "w", keys: 25, chunkSize: 10, by: "b", node: "b", now: 1000})
			require.NoError(t, err)
			assert.False(t, created)
			_, _, err = s.register(ctx, regReq{id: "w", keys: 26, chunkSize: 10, node: "b", now: 1000})
			assert.ErrorIs(t, err, ErrConflict)

			claim := func(node string, now int64) int64 {
				t.Helper()
				res, err := s.claim(ctx, claimReq{id: "w", node: node, now: now, ttlUs: 100})
				require.NoError(t, err)
				require.False(t, res.missing)
				return res.chunk
			}
			renew := func(node string, now, chunk int64) bool {
				t.Helper()
				res, err := s.renew(ctx, claimReq{id: "w", node: node, now: now, ttlUs: 100}, chunk)
				require.NoError(t, err)
				return res.held
			}
			complete := func(node string, now, chunk int64, failed ...string) Phase {
				t.Helper()
				res, err := s.complete(ctx, claimReq{id: "w", node: node, now: now}, chunk, failed, int64(len(failed)), 10)
				require.NoError(t, err)
				return res.phase
			}
			assert.EqualValues(t, 0, claim("a", 1000))
			assert.EqualValues(t, 1, claim("b", 1000))
			assert.EqualValues(t, 2, claim("c", 1000))
			assert.EqualValues(t, -1, claim("d", 1000), "every chunk is held")
			assert.True(t, renew("a", 1050, 0))
			assert.False(t, renew("b", 1050, 0), "b does not hold chunk 0")
			assert.EqualValues(t, 1, claim("d", 1120), "the lowest expired claim is taken over")
			assert.False(t, renew("b", 1120, 1), "b lost chunk 1 to d")
			assert.Equal(t, Running, complete("b", 1130, 1, "k13"), "a late completion still counts")
			// At 1300 every claim has expired; chunk 1 is done, so its
			// claim is dropped rather than handed out again.
			assert.EqualValues(t, 0, claim("e", 1300))
			assert.EqualValues(t, 2, claim("e", 1300))
			assert.EqualValues(t, -1, claim("e", 1300))
			assert.Equal(t, Running, complete("e", 1310, 0))
			assert.Equal(t, Done, complete("e", 1320, 2))
			rec, err = s.get(ctx, "w")
			require.NoError(t, err)
			assert.Equal(t, Done, rec.phase)
			assert.EqualValues(t, 25, rec.doneKeys())
			assert.EqualValues(t, 1, rec.failed)
			assert.Equal(t, []string{"k13"}, rec.failedKeys)
			assert.EqualValues(t, 0, rec.claimed)
			assert.EqualValues(t, 320, rec.running(2000), "running time from registration to done")
			_, _, err = s.control(ctx, "w", actPause, By{Who: "ops"}, 1400)
			assert.ErrorIs(t, err, ErrFinished)
			_, err = s.get(ctx, "nope")
			assert.ErrorIs(t, err, ErrUnknownWarm)
		})
	}
}
