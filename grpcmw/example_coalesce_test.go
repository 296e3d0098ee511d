package grpcmw_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herdcap/herdcap/grpcmw"
)

// ExampleCoalesce coalesces health checks: concurrent identical Check calls
// run the handler once and each gets a copy of its response.
func ExampleCoalesce() {
	co, err := grpcmw.Coalesce(grpcmw.CoalesceConfig{
		Methods: []string{"/grpc.health.v1.Health/Check"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	client, stop := serve(grpc.ChainUnaryInterceptor(co.Unary), grpc.ChainStreamInterceptor(co.Stream))
	defer stop()
	res, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(res.GetStatus(), err)

	_, err = grpcmw.Coalesce(grpcmw.CoalesceConfig{Methods: []string{"Check"}})
	fmt.Println(err)
	// Output:
	// SERVING <nil>
	// grpcmw: invalid config: grpcmw.CoalesceConfig.Methods[0] must be a full method name (/package.Service/Method), got "Check"
}
