package admission

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
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
	a, _ := New(limiter.PerSecond(1e9, 1e6), Config{})
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
	a, _ := New(limiter.PerSecond(1e9, 1e6), Config{})
	admitParallel(b, a)
}

// admitParallel admits 1,024 clients over and over on every P.
func admitParallel(b *testing.B, a *Gate) {
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
		a    *Gate
		clk  = fakeclock.New(t0)
		told = make([]time.Time, herd)
	)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		k := i % (2 * herd)
		if k == 0 {
			b.StopTimer()
			a, _ = New(limiter.PerSecond(1000, 1), Config{Config: limiter.Config{Clock: clk}, Horizon: time.Hour})
			b.StartTimer()
		}
		if k < herd {
			clk.Set(t0)
			d, _ := a.Admit(ctx, ids[k], "")
			told[k] = d.RetryAt
		} else {
			clk.Set(told[k-herd])
			_, _ = a.Admit(ctx, ids[k-herd], "")
		}
	}
}

func BenchmarkAdmitMemoryRejoin(b *testing.B) {
	a, _ := New(limiter.PerSecond(1, 1), Config{Config: limiter.Config{Clock: fakeclock.New(t0)},
		TicketKeys: [][]byte{[]byte("key B: 32 random bytes, really!!")}, TicketTTL: time.Hour})
	d, _ := a.Admit(context.Background(), "client-1", "")
	tk := d.Ticket
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.Admit(ctx, "client-1", tk)
	}
}

func BenchmarkAdmitRedisParallel(b *testing.B) {
	if srv == nil {
		b.Skip("no redis-server")
	}
	a, err := NewShared(fleet.Redis{Client: srv.Client(b), Name: uniqueName()}, limiter.PerSecond(1e9, 1e6), SharedConfig{Failure: fleet.FailOpen})
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
			if err != nil || d.Via != limiter.ViaRedis {
				b.Errorf("%v %v", d.Via, err)
				return
			}
			i++
		}
	})
}

// BenchmarkAdmitMemoryPaced: the common path with a Headroom, read every
// 100 ms of the clock (the clock is the system's here: a reading is rare).
func BenchmarkAdmitMemoryPaced(b *testing.B) {
	a, _ := New(limiter.PerSecond(1e9, 1e6), Config{Headroom: newSpare(1e12)})
	admitParallel(b, a)
}
