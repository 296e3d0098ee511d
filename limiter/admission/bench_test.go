package limiter

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "client-" + strconv.Itoa(i)
	}
	return ids
}

// BenchmarkAdmitMemory: the common path, a budget with room.
func BenchmarkAdmitMemory(b *testing.B) {
	a, _ := NewAdmission(PerSecond(1e9, 1e6))
	ids := benchIDs(1024)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = a.Admit(ctx, ids[i&1023], "")
		i++
	}
}

func BenchmarkAdmitMemoryParallel(b *testing.B) {
	a, _ := NewAdmission(PerSecond(1e9, 1e6))
	ids := benchIDs(1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _ = a.Admit(ctx, ids[i&1023], "")
			i++
		}
	})
}

// BenchmarkAdmitMemoryStorm: every Admit books a slot for a new client,
// then every client comes back for it (two Admits per client).
func BenchmarkAdmitMemoryStorm(b *testing.B) {
	const herd = 1 << 14
	ids := benchIDs(herd)
	ctx := context.Background()
	var (
		a    *Admission
		told = make([]time.Time, herd)
	)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := i % (2 * herd)
		if k == 0 {
			b.StopTimer()
			a, _ = NewAdmission(PerSecond(1000, 1), WithHorizon(time.Hour))
			b.StartTimer()
		}
		if k < herd {
			d, _ := a.AdmitAt(ctx, ids[k], t0, "")
			told[k] = d.RetryAt
		} else {
			_, _ = a.AdmitAt(ctx, ids[k-herd], told[k-herd], "")
		}
	}
}

func BenchmarkAdmitMemoryResume(b *testing.B) {
	s, _ := NewResumeSigner(testKeyA)
	a, _ := NewAdmission(PerSecond(1, 1), WithResume(s, time.Hour))
	d, _ := a.AdmitAt(context.Background(), "client-1", t0, "")
	tok := d.ResumeToken
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.AdmitAt(ctx, "client-1", t0, tok)
	}
}

func BenchmarkAdmitRedisParallel(b *testing.B) {
	if srv == nil {
		b.Skip("no redis-server")
	}
	a, err := NewRedisAdmission(srv.Client(b), PerSecond(1e9, 1e6), WithName(uniqueName()), WithFailure(FailOpen))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ids := benchIDs(1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d, err := a.Admit(ctx, ids[i&1023], "")
			if err != nil || d.Source != SourceRedis {
				b.Errorf("%v %v", d.Source, err)
				return
			}
			i++
		}
	})
}
