package grpcmw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/virtualtime"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/retry"
)

// defaultSlotJitter is retry.Backoff's default SlotJitter: a client comes
// back less than this after its exact slot.
const defaultSlotJitter = 5 * time.Millisecond

// maxInWindow returns the most of the sorted times ts in any window of
// length w.
func maxInWindow(ts []time.Duration, w time.Duration) int {
	best, j := 0, 0
	for i := range ts {
		for ts[i]-ts[j] >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestAdmissionHerdVirtualTime is the reconnect-storm target of issue 3
// through the shipped gRPC client: 10,000 clients disconnected at one
// instant, each a Client of its own (default backoff shape, retry budget
// and bounds) whose unary interceptor calls Check over one real loopback
// grpc-go connection, against Admit on a gate of 500 new
// sessions per second (50 at once). Time is virtual: the Admission reads a
// fake clock and the Clients sleep on a scheduler that runs one client at a
// time and sets the clock to its wake-up time, so the run is deterministic
// (the backoff is seeded) and takes seconds, not the storm's 20.
//
// The target: after the herd's own instant, every 1-second window of
// arrivals holds at most 1.1 × 500. The Client honours the pushback (the
// exact slot) with retry.Backoff.DelaySlot, so each return is at most
// 5 ms after its slot: a window holds at most the slots of 1.005 s (2.5
// more than the rate) plus one the gate's jitter can move in, rate + 4,
// which is asserted as well (with DelayHint's 10% jitter instead, the same
// storm's busiest window holds 527).
func TestAdmissionHerdVirtualTime(t *testing.T) {
	const (
		herd  = 10_000
		rate  = 500
		burst = 50
	)
	clk := fakeclock.New(t0)
	adm := mustAdmit(t, newAdmission(t, limiter.PerSecond(rate, burst), admission.Config{Config: limiter.Config{Clock: clk}}), admitHealth).Unary
	var (
		mu       sync.Mutex
		arrivals []time.Duration // virtual, since the storm; in order (one client at a time)
		attempts = map[string]int{}
	)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		mu.Lock()
		arrivals = append(arrivals, clk.Now().Sub(t0))
		attempts[metadata.ValueFromIncomingContext(ctx, metadataClient)[0]]++
		mu.Unlock()
		return h(ctx, req)
	}
	addr := startHealth(t, grpc.ChainUnaryInterceptor(record, adm))
	// One connection without interceptors; each client's interceptor is
	// called directly with it, as grpc-go would call the chain.
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	invoke := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return cc.Invoke(ctx, method, req, reply, opts...)
	}
	bo := retry.Backoff{Rand: rand.New(rand.NewPCG(3, 4)).Float64} // the default shape, seeded

	sched := virtualtime.New(clk)
	outcomes := map[codes.Code]int{}
	for i := range herd {
		hc, err := NewClient(ClientConfig{ClientID: fmt.Sprintf("client-%05d", i), Retry: retry.Policy{Backoff: bo}, Clock: sched.Clock()})
		require.NoError(t, err)
		call := hc.UnaryInterceptor()
		sched.Go(t0, func() {
			err := call(context.Background(), checkMethod, &healthpb.HealthCheckRequest{}, new(healthpb.HealthCheckResponse), conn, invoke)
			outcomes[status.Code(err)]++ // tasks run one at a time
		})
	}
	start := time.Now()
	end := sched.Run()
	t.Logf("%d clients through Admit in %v of virtual time, %v of wall time", herd, end.Sub(t0), time.Since(start).Round(time.Millisecond))
	require.Equal(t, map[codes.Code]int{codes.OK: herd}, outcomes, "every client gets in")

	mu.Lock()
	defer mu.Unlock()
	require.True(t, slices.IsSorted(arrivals))
	returns := arrivals[slices.IndexFunc(arrivals, func(d time.Duration) bool { return d > 0 }):]
	assert.Len(t, returns, herd-burst, "all but the burst came back, once")
	for id, n := range attempts {
		if n > 2 {
			t.Fatalf("%s: %d attempts: refused at its slot", id, n)
		}
	}
	busiest := maxInWindow(returns, time.Second)
	t.Logf("busiest 1 s window of returns: %d; target %d", busiest, rate*11/10)
	assert.LessOrEqual(t, busiest, rate*11/10)
	assert.LessOrEqual(t, busiest, rate+4, "each return at most 5 ms after its slot")
	last := returns[len(returns)-1]
	assert.GreaterOrEqual(t, last, time.Duration(herd-burst)*time.Second/rate)
	assert.LessOrEqual(t, last, time.Duration(herd-burst)*time.Second/rate+time.Second/rate+defaultSlotJitter+time.Millisecond)
}
