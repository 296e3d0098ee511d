package grpcmw_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// movingClock moves only when told to, so that the examples' epochs and
// slots are exact.
type movingClock struct{ t time.Time }

func (c *movingClock) Now() time.Time { return c.t }

func (c *movingClock) AfterFunc(time.Duration, func()) limiter.Timer { panic("no timers here") }

// serveDial starts a health server with serverOpts on a loopback port and
// returns a client dialled with dialOpts, and a function that stops both.
func serveDial(serverOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) (healthpb.HealthClient, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(serverOpts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(lis.Addr().String(), dialOpts...)
	if err != nil {
		log.Fatal(err)
	}
	return healthpb.NewHealthClient(conn), func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	}
}

// released returns a coordinator on a stopped clock holding one released
// rollout of the catalog.
func released() *invalidate.Coordinator {
	ctx := context.Background()
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	coord, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(), invalidate.Config{Clock: clk, CacheTTL: -1})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := coord.Start(ctx, invalidate.Rollout{ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 1,
		Rate: 100, Clients: 10, Coverage: 0.1, By: "deployer"}); err != nil {
		log.Fatal(err)
	}
	clk.t = clk.t.Add(time.Second)
	if err := coord.Advance(ctx); err != nil { // what coord.Run does every second
		log.Fatal(err)
	}
	return coord
}

// The examples serve the health service as their application, which the
// interceptors leave alone unless told (NotifyHealth, LimitHealth); your
// own services need no such field.

func ExampleInvalidate() {
	inv, err := grpcmw.Invalidate(released(), grpcmw.InvalidateConfig{NotifyHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serveDial([]grpc.ServerOption{grpc.ChainUnaryInterceptor(inv.Unary)})
	defer stop()

	for _, applied := range []string{"0", "1767225600000"} {
		ctx := metadata.AppendToOutgoingContext(context.Background(),
			"herdcap-client", "client-7", "herdcap-epoch", applied)
		var header metadata.MD
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("applied %s: %q %q\n", applied, header.Get("herdcap-invalidate"), header.Get("herdcap-epoch"))
	}
	// Output:
	// applied 0: ["\"tag:catalog\";epoch=1767225600000;id=\"catalog-v2\""] ["1767225600000"]
	// applied 1767225600000: [] []
}

func ExampleAdmit() {
	// 2 new sessions per second, 1 at once, on a clock that stands still.
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	gate, err := admission.New(limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}})
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	adm, err := grpcmw.Admit(gate, grpcmw.AdmitConfig{LimitHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serveDial([]grpc.ServerOption{grpc.ChainUnaryInterceptor(adm.Unary)})
	defer stop()

	for _, id := range []string{"alice", "bob"} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "herdcap-client", id)
		var trailer metadata.MD
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		st := status.Convert(err)
		fmt.Println(id, st.Code(), trailer.Get("grpc-retry-pushback-ms"))
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				fmt.Println("  RetryInfo:", ri.GetRetryDelay().AsDuration())
			}
		}
	}
	// Output:
	// alice OK []
	// bob Unavailable [864]
	//   RetryInfo: 864ms
}

func ExampleNewClient() {
	inv, err := grpcmw.Invalidate(released(), grpcmw.InvalidateConfig{NotifyHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	cache := map[string]string{"tag:catalog": "stale"}
	hc, err := grpcmw.NewClient(grpcmw.ClientConfig{
		ClientID: "client-7",
		OnInvalidate: func(n invalidate.Notice) {
			fmt.Printf("dropping %s (rollout %s)\n", n.Scope, n.RolloutID)
			delete(cache, n.Scope)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serveDial([]grpc.ServerOption{grpc.ChainUnaryInterceptor(inv.Unary)},
		grpc.WithChainUnaryInterceptor(hc.UnaryInterceptor()),
		grpc.WithChainStreamInterceptor(hc.StreamInterceptor()),
		grpc.WithDisableRetry()) // the Client retries refusals itself
	defer stop()

	for range 2 { // the notice comes once: the Client sends its new epoch
		if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			log.Fatal(err)
		}
		fmt.Println("applied epoch", hc.Applied(), "cached scopes", len(cache))
	}
	// Output:
	// dropping tag:catalog (rollout catalog-v2)
	// applied epoch 1767225600000 cached scopes 0
	// applied epoch 1767225600000 cached scopes 0
}

func ExampleInvalidate_stream() {
	inv, err := grpcmw.Invalidate(released(), grpcmw.InvalidateConfig{NotifyHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serveDial([]grpc.ServerOption{grpc.ChainStreamInterceptor(inv.Stream)})
	defer stop()

	// The notices go in the header sent with the stream's first message.
	for _, applied := range []string{"0", "1767225600000"} {
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(),
			"herdcap-client", "client-7", "herdcap-epoch", applied))
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			log.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			log.Fatal(err)
		}
		header, err := stream.Header()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("applied %s: %v %q %q\n", applied, first.GetStatus(),
			header.Get("herdcap-invalidate"), header.Get("herdcap-epoch"))
		cancel()
	}
	// Output:
	// applied 0: SERVING ["\"tag:catalog\";epoch=1767225600000;id=\"catalog-v2\""] ["1767225600000"]
	// applied 1767225600000: SERVING [] []
}

func ExampleAdmit_stream() {
	// 2 new sessions per second, 1 at once, on a clock that stands still:
	// a stream is a session, admitted when it opens.
	clk := &movingClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	gate, err := admission.New(limiter.PerSecond(2, 1), admission.Config{Config: limiter.Config{Clock: clk}})
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	adm, err := grpcmw.Admit(gate, grpcmw.AdmitConfig{LimitHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serveDial([]grpc.ServerOption{grpc.ChainStreamInterceptor(adm.Stream)})
	defer stop()

	for _, id := range []string{"alice", "bob"} {
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "herdcap-client", id))
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			log.Fatal(err)
		}
		if first, err := stream.Recv(); err != nil {
			// Refused as it opened: the slot is in the pushback trailer.
			fmt.Println(id, status.Code(err), stream.Trailer().Get("grpc-retry-pushback-ms"))
		} else {
			fmt.Println(id, first.GetStatus())
		}
		cancel()
	}
	// Output:
	// alice SERVING
	// bob Unavailable [864]
}
