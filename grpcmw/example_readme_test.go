package grpcmw_test

import (
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/limiter"
)

// Example_serverAndClient is the README's gRPC server with a rate limit,
// and a client that backs off as the server says. It is compiled, not run:
// it serves forever.
func Example_serverAndClient() {
	budget, err := limiter.NewLocal(limiter.PerSecond(100, 200), limiter.Config{}) // or fleet.NewStrict / NewLeased for the fleet
	if err != nil {
		log.Fatal(err)
	}
	rl, err := grpcmw.RateLimit(grpcmw.RateLimitConfig{}, grpcmw.Policy{Budget: budget}) // health checks pass
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(rl.Unary), grpc.ChainStreamInterceptor(rl.Stream))
	// ... register your services on srv ...
	lis, err := net.Listen("tcp", "127.0.0.1:9090")
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(srv.Serve(lis)) }()

	// A client that waits as the server's pushback says, within a retry budget.
	hc, err := grpcmw.NewClient(grpcmw.ClientConfig{ClientID: "client-42"})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(hc.UnaryInterceptor()), grpc.WithChainStreamInterceptor(hc.StreamInterceptor()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}
