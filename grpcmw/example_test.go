package grpcmw_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/limiter"
)

// serve starts a health server with the given options on a loopback port and
// returns a client for it and a function that stops both.
func serve(opts ...grpc.ServerOption) (healthpb.HealthClient, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	return healthpb.NewHealthClient(conn), func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	}
}

func ExampleRateLimit() {
	// One call per client IP per hour. (The example limits the health
	// service, its only service, which RateLimit skips unless LimitHealth.)
	b, err := limiter.NewLocal(limiter.Every(time.Hour, 1), limiter.Config{})
	if err != nil {
		log.Fatal(err)
	}
	rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{LimitHealth: true}, grpcmw.Policy{Budget: b})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serve(grpc.ChainUnaryInterceptor(rl.Unary))
	defer stop()

	for range 2 {
		var trailer metadata.MD
		_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		st := status.Convert(err)
		fmt.Println(st.Code())
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				fmt.Println("retry in about", ri.GetRetryDelay().AsDuration().Round(time.Minute))
				fmt.Println("pushback trailer sent:", len(trailer.Get("grpc-retry-pushback-ms")) == 1)
			}
		}
	}
	// Output:
	// OK
	// ResourceExhausted
	// retry in about 1h0m0s
	// pushback trailer sent: true
}

func ExampleRateLimit_stream() {
	// One stream per client IP per hour; the health checks' unary Check
	// is not limited here.
	b, err := limiter.NewLocal(limiter.Every(time.Hour, 1), limiter.Config{})
	if err != nil {
		log.Fatal(err)
	}
	rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{LimitHealth: true}, grpcmw.Policy{Budget: b})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serve(grpc.ChainStreamInterceptor(rl.Stream))
	defer stop()

	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			log.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			fmt.Println(status.Code(err))
		} else {
			fmt.Println(resp.GetStatus())
		}
		cancel()
	}
	// Output:
	// SERVING
	// ResourceExhausted
}

func ExampleNewLimiter() {
	b, err := limiter.NewLocal(limiter.Every(time.Hour, 1), limiter.Config{})
	if err != nil {
		log.Fatal(err)
	}
	// Key by a tenant from the incoming metadata instead of the peer IP.
	l, err := grpcmw.NewLimiter(grpcmw.RateLimitConfig{}, grpcmw.Policy{Budget: b, Key: func(ctx context.Context, _ string) (string, error) {
		if t := metadata.ValueFromIncomingContext(ctx, "x-tenant"); len(t) == 1 {
			return t[0], nil
		}
		return "", status.Error(codes.InvalidArgument, "missing x-tenant")
	}})
	if err != nil {
		log.Fatal(err)
	}
	// l is what go-grpc-middleware v2 expects:
	// ratelimit.UnaryServerInterceptor(l), ratelimit.StreamServerInterceptor(l).
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-tenant", "acme"))
	fmt.Println(l.Limit(ctx))
	var e *grpcmw.Error
	if err := l.Limit(ctx); errors.As(err, &e) {
		fmt.Println(e.Code, e.RetryAfter.Round(time.Minute))
	}
	fmt.Println(l.Limit(context.Background()))
	// Output:
	// <nil>
	// ResourceExhausted 1h0m0s
	// rpc error: code = InvalidArgument desc = missing x-tenant
}
