package grpcmw_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/grpcmw"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

func ExampleSlowStart() {
	// A node just started: it serves a tenth of its clients at first, all
	// of them after a minute. (The example decides the health service,
	// its only service, which SlowStart skips unless LimitHealth.)
	g, err := slowstart.New(slowstart.Config{Window: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	ss, err := grpcmw.SlowStart(g, grpcmw.SlowStartConfig{LimitHealth: true})
	if err != nil {
		log.Fatal(err)
	}
	client, stop := serve(grpc.ChainUnaryInterceptor(ss.Unary))
	defer stop()

	served, shed := 0, map[string]int{}
	for i := range 100 {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "herdcap-client", fmt.Sprint("client-", i))
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			shed[status.Code(err).String()]++
		} else {
			served++
		}
	}
	// About 10 of 100 clients are served (a few more if the machine takes
	// seconds of the window meanwhile); the others get Unavailable, told
	// when to come back.
	fmt.Println("a few served:", served > 0 && served < 30)
	fmt.Println("the others:", len(shed), "code,", shed["Unavailable"] == 100-served)
	// Output:
	// a few served: true
	// the others: 1 code, true
}
