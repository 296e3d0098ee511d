package slowstart

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkAdmit is a ramping decision (share below 1, warmth read),
// keyed and key-less.
func BenchmarkAdmit(b *testing.B) {
	g, err := New(Config{Window: time.Hour, Warmth: func() float64 { return 0.3 }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	b.Run("keyed", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_, _ = g.Admit(ctx, keys[i&1023])
				i++
			}
		})
	})
	b.Run("keyless", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = g.Admit(ctx, "")
		}
	})
}
