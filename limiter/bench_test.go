package limiter

import (
	"context"
	"strconv"
	"testing"
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
