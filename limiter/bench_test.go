package limiter

import (
	"context"
	"strconv"
	"testing"

	"github.com/herdcap/herdcap/observe"
)

func BenchmarkLocalAllowN10kKeysParallel(b *testing.B) {
	lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{})
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = lb.AllowN(ctx, keys[i%len(keys)], 1)
			i++
		}
	})
}

// BenchmarkLocalAllowNObserved measures what observer hooks add to the hot
// path: none, the zero Hooks, and a Decision hook that does nothing. The
// target is at most 10 ns over "none".
func BenchmarkLocalAllowNObserved(b *testing.B) {
	for _, c := range []struct {
		name string
		obs  *observe.Hooks
	}{
		{"none", nil},
		{"unset", &observe.Hooks{}},
		{"noop", &observe.Hooks{Decision: func(observe.Decision) {}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{Observe: c.obs, Name: "api"})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = lb.AllowN(ctx, "user:1", 1)
			}
		})
	}
}

// BenchmarkLocalObserveDispatch isolates what AllowN adds for its hook:
// the nil check, and with a no-op hook the event's construction and the
// call. On a loaded machine it resolves what BenchmarkLocalAllowNObserved's
// noise hides.
func BenchmarkLocalObserveDispatch(b *testing.B) {
	for _, c := range []struct {
		name string
		obs  *observe.Hooks
	}{
		{"none", nil},
		{"noop", &observe.Hooks{Decision: func(observe.Decision) {}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			lb, _ := NewLocal(PerSecond(1e9, 1e9), Config{Observe: c.obs, Name: "api"})
			d := Decision{Allowed: true, Taken: 1, Via: ViaLocal}
			var err error
			b.ReportAllocs()
			for b.Loop() {
				// What AllowN runs after its decision, as it is there.
				if lb.onDec != nil && err == nil {
					lb.onDec(observed(lb.name, d, 1))
				}
			}
		})
	}
}
