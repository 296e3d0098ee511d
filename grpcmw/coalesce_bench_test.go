package grpcmw

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/herdcap/herdcap/internal/serverside"
)

// BenchmarkCoalesce measures Coalesce's interceptor called directly.
// "pass-through" is a call of a method it does not coalesce, against
// "bare", the handler alone; "lead" a call that finds no flight and leads
// one; "waiter" the cost of a coalesced hit without the wait: the key
// (the deterministic marshal of the request), joining a flight that has
// ended and cloning its response; "parallel" concurrent identical calls.
func BenchmarkCoalesce(b *testing.B) {
	u, err := newCoalescer(CoalesceConfig{Methods: []string{unaryMethod}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	req := &testgrpc.SimpleRequest{ResponseSize: 10, Payload: &testgrpc.Payload{Body: []byte("0123456789")}}
	resp := &testgrpc.SimpleResponse{Username: "user"}
	handler := func(context.Context, any) (any, error) { return resp, nil }
	on := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	off := &grpc.UnaryServerInfo{FullMethod: "/grpc.testing.TestService/EmptyCall"}
	run := func(b *testing.B, info *grpc.UnaryServerInfo) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := u.intercept(ctx, req, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = handler(ctx, req)
		}
	})
	b.Run("pass-through", func(b *testing.B) { run(b, off) })
	b.Run("lead", func(b *testing.B) { run(b, on) })
	b.Run("waiter", func(b *testing.B) {
		c := serverside.NewCoalescer[*unaryReplay](serverside.CoalesceBounds{MaxKeys: 1, MaxWaiters: 1})
		f, _ := c.Join([]byte("k"))
		c.Finish(f, &unaryReplay{resp: resp}, serverside.Shared)
		b.ReportAllocs()
		for b.Loop() {
			bp := keyBufs.Get().(*[]byte)
			key, err := u.key((*bp)[:0], unaryMethod, req, nil)
			if err != nil {
				b.Fatal(err)
			}
			*bp = key
			keyBufs.Put(bp)
			rep, _, _ := f.Wait(ctx)
			if _, err := rep.answer(ctx, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = u.intercept(ctx, req, on, handler)
			}
		})
	})
}
