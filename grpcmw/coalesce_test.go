package grpcmw

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/herdcap/herdcap/internal/coalescetest"
)

const unaryMethod = "/grpc.testing.TestService/UnaryCall"

// gatedService answers UnaryCall with its run number and the request's
// payload; until release is closed, it blocks each run for which block
// returns true. A request with ResponseStatus fails with that status.
type gatedService struct {
	testgrpc.UnimplementedTestServiceServer
	runs    atomic.Int32
	release chan struct{}
	block   func(run int32) bool
	ctxErr  atomic.Value
}

func newGatedService() *gatedService {
	return &gatedService{release: make(chan struct{}), block: func(int32) bool { return true }}
}

func (s *gatedService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	run := s.runs.Add(1)
	if s.block(run) {
		<-s.release
	}
	s.ctxErr.Store(status.Code(ctx.Err()).String())
	if st := req.GetResponseStatus(); st != nil {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("why", st.GetMessage()))
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("run", strconv.Itoa(int(run))))
	return &testgrpc.SimpleResponse{Username: string(req.GetPayload().GetBody()) + " run " + strconv.Itoa(int(run))}, nil
}

// coalesceApp serves s behind Coalesce(cfg) (after an outer interceptor
// that hands the server side's context of calls with "leader" metadata to
// leaderCtx) on loopback, and returns a client and the coalescer.
func coalesceApp(t *testing.T, cfg CoalesceConfig, s *gatedService, leaderCtx chan<- context.Context) (testgrpc.TestServiceClient, *unaryCoalescer) {
	t.Helper()
	u, err := newCoalescer(cfg)
	require.NoError(t, err)
	outer := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md["leader"]) > 0 && leaderCtx != nil {
			leaderCtx <- ctx
		}
		return h(ctx, req)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(outer, u.intercept))
	testgrpc.RegisterTestServiceServer(srv, s)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return testgrpc.NewTestServiceClient(conn), u
}

// callsInFlight waits until the coalescer has keys in flight and waiters
// waiting on them.
func callsInFlight(t *testing.T, u *unaryCoalescer, keys, waiters int) {
	t.Helper()
	coalescetest.InFlight(t, u.c, keys, waiters)
}

type callResult struct {
	resp            *testgrpc.SimpleResponse
	header, trailer metadata.MD
	err             error
}

// callAll makes the calls concurrently and returns a channel of their
// results.
func callAll(client testgrpc.TestServiceClient, calls ...func() (context.Context, *testgrpc.SimpleRequest)) <-chan callResult {
	out := make(chan callResult, len(calls))
	for _, c := range calls {
		go func() {
			ctx, req := c()
			var r callResult
			r.resp, r.err = client.UnaryCall(ctx, req, grpc.Header(&r.header), grpc.Trailer(&r.trailer))
			out <- r
		}()
	}
	return out
}

// same returns n calls with the body and metadata pairs.
func same(n int, body string, kv ...string) []func() (context.Context, *testgrpc.SimpleRequest) {
	calls := make([]func() (context.Context, *testgrpc.SimpleRequest), n)
	for i := range calls {
		calls[i] = func() (context.Context, *testgrpc.SimpleRequest) {
			return metadata.AppendToOutgoingContext(context.Background(), kv...), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}
		}
	}
	return calls
}

var coalesceUnary = CoalesceConfig{Methods: []string{unaryMethod}}

func TestCoalesceCallsRunOnce(t *testing.T) {
	const n = 20
	s := newGatedService()
	client, u := coalesceApp(t, coalesceUnary, s, nil)
	out := callAll(client, same(n, "hi")...)
	callsInFlight(t, u, 1, n-1)
	close(s.release)
	for range n {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, "hi run 1", r.resp.GetUsername())
		assert.Equal(t, []string{"1"}, r.header.Get("run"), "the handler's header reaches every call")
	}
	assert.EqualValues(t, 1, s.runs.Load())
	callsInFlight(t, u, 0, 0)
}

func TestCoalesceCallsStatusReplayed(t *testing.T) {
	const n = 5
	s := newGatedService()
	client, u := coalesceApp(t, coalesceUnary, s, nil)
	calls := make([]func() (context.Context, *testgrpc.SimpleRequest), n)
	for i := range calls {
		calls[i] = func() (context.Context, *testgrpc.SimpleRequest) {
			return context.Background(), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such"}}
		}
	}
	out := callAll(client, calls...)
	callsInFlight(t, u, 1, n-1)
	close(s.release)
	for range n {
		r := <-out
		assert.Equal(t, codes.NotFound, status.Code(r.err))
		assert.Equal(t, "no such", status.Convert(r.err).Message())
		assert.Equal(t, []string{"no such"}, r.trailer.Get("why"), "the handler's trailer reaches every call")
	}
	assert.EqualValues(t, 1, s.runs.Load())
}

func TestCoalesceCallsNotCoalesced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   CoalesceConfig
		calls []func() (context.Context, *testgrpc.SimpleRequest)
	}{
		{"other bodies", coalesceUnary, append(same(1, "a"), same(1, "b")...)},
		{"metadata keyed", CoalesceConfig{Methods: []string{unaryMethod}, Metadata: []string{"Tenant"}},
			append(same(1, "a", "tenant", "x"), same(1, "a", "tenant", "y")...)},
		{"credentials", coalesceUnary, same(2, "a", "authorization", "Bearer x")},
		{"credentials keyed", CoalesceConfig{Methods: []string{unaryMethod}, Credentials: true},
			append(same(1, "a", "authorization", "Bearer x"), same(1, "a", "authorization", "Bearer y")...)},
		{"method not listed", CoalesceConfig{Methods: []string{"/grpc.testing.TestService/EmptyCall"}}, same(2, "a")},
		{"declared idempotent", CoalesceConfig{NoSideEffects: true, Descriptors: declared(t, descriptorpb.MethodOptions_IDEMPOTENT)}, same(2, "a")},
		{"declared nothing", CoalesceConfig{NoSideEffects: true, Descriptors: declared(t, descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN)}, same(2, "a")},
		{"not in the registry", CoalesceConfig{NoSideEffects: true, Descriptors: new(protoregistry.Files)}, same(2, "a")},
		{"global registry", CoalesceConfig{NoSideEffects: true}, same(2, "a")}, // the test service declares no level
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{}, 2)
			s := newGatedService()
			s.block = func(int32) bool { entered <- struct{}{}; return true }
			client, _ := coalesceApp(t, tc.cfg, s, nil)
			out := callAll(client, tc.calls...)
			<-entered
			<-entered // both calls run the handler
			close(s.release)
			for range 2 {
				require.NoError(t, (<-out).err)
			}
		})
	}
}

func TestCoalesceCallsCredentialsShared(t *testing.T) {
	s := newGatedService()
	client, u := coalesceApp(t, CoalesceConfig{Methods: []string{unaryMethod}, Credentials: true}, s, nil)
	out := callAll(client, same(3, "a", "authorization", "Bearer x")...)
	callsInFlight(t, u, 1, 2)
	close(s.release)
	for range 3 {
		require.NoError(t, (<-out).err)
	}
	assert.EqualValues(t, 1, s.runs.Load())
}

func TestCoalesceCallsWaiterCancel(t *testing.T) {
	s := newGatedService()
	client, u := coalesceApp(t, coalesceUnary, s, nil)
	leader := callAll(client, same(1, "a")...)
	callsInFlight(t, u, 1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	quitter := callAll(client, func() (context.Context, *testgrpc.SimpleRequest) {
		return ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("a")}}
	})
	callsInFlight(t, u, 1, 1)
	other := callAll(client, same(1, "a")...)
	callsInFlight(t, u, 1, 2)
	cancel()
	assert.Equal(t, codes.Canceled, status.Code((<-quitter).err))
	close(s.release)
	for _, ch := range []<-chan callResult{leader, other} {
		r := <-ch
		require.NoError(t, r.err)
		assert.Equal(t, "a run 1", r.resp.GetUsername())
	}
}

func TestCoalesceCallsLeaderGone(t *testing.T) {
	s := newGatedService()
	leaderCtx := make(chan context.Context, 1)
	client, u := coalesceApp(t, coalesceUnary, s, leaderCtx)
	ctx, cancel := context.WithCancel(context.Background())
	leader := callAll(client, func() (context.Context, *testgrpc.SimpleRequest) {
		return metadata.AppendToOutgoingContext(ctx, "leader", "1"), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("a")}}
	})
	serverSide := <-leaderCtx
	callsInFlight(t, u, 1, 0)
	waiters := callAll(client, same(3, "a")...)
	callsInFlight(t, u, 1, 3)
	cancel()
	assert.Equal(t, codes.Canceled, status.Code((<-leader).err))
	<-serverSide.Done() // the server saw the leader's client go
	close(s.release)
	for range 3 {
		r := <-waiters
		require.NoError(t, r.err)
		assert.Equal(t, "a run 1", r.resp.GetUsername())
	}
	assert.Equal(t, codes.OK.String(), s.ctxErr.Load(), "the leader's handler's context stayed live")
}

func TestCoalesceCallsBounds(t *testing.T) {
	entered := make(chan struct{}, 5)
	s := newGatedService()
	s.block = func(int32) bool { entered <- struct{}{}; return true }
	client, u := coalesceApp(t, CoalesceConfig{Methods: []string{unaryMethod}, MaxWaiters: 2, MaxKeys: 1}, s, nil)
	out := callAll(client, same(5, "a")...)
	for range 3 {
		<-entered // the leader and the two past MaxWaiters
	}
	callsInFlight(t, u, 1, 2)
	other := callAll(client, same(1, "b")...)
	<-entered // past MaxKeys
	close(s.release)
	for range 5 {
		require.NoError(t, (<-out).err)
	}
	require.NoError(t, (<-other).err)
	assert.EqualValues(t, 4, s.runs.Load())
}

// TestCoalesceCallsPanicAndClone calls the interceptor directly: a panic
// in a grpc-go handler would end the test binary. The leader's panic goes
// on; the waiters get codes.Internal. A shared response reaches each
// waiter as a clone.
func TestCoalesceCallsPanicAndClone(t *testing.T) {
	u, err := newCoalescer(coalesceUnary)
	require.NoError(t, err)
	info := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	req := &testgrpc.SimpleRequest{ResponseSize: 1}
	for _, panics := range []bool{true, false} {
		release := make(chan struct{})
		shared := &testgrpc.SimpleResponse{Username: "u"}
		handler := func(context.Context, any) (any, error) {
			<-release
			if panics {
				panic("boom")
			}
			return shared, nil
		}
		leader := make(chan any, 1)
		go func() {
			defer func() { leader <- recover() }()
			resp, _ := u.intercept(context.Background(), req, info, handler)
			assert.Same(t, shared, resp, "the leader gets its own message")
		}()
		callsInFlight(t, u, 1, 0)
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := u.intercept(context.Background(), req, info, handler)
				if panics {
					assert.Equal(t, codes.Internal, status.Code(err))
					return
				}
				require.NoError(t, err)
				assert.NotSame(t, shared, resp, "a waiter gets a clone")
				assert.Equal(t, "u", resp.(*testgrpc.SimpleResponse).GetUsername())
			}()
		}
		callsInFlight(t, u, 1, 3)
		close(release)
		wg.Wait()
		if panics {
			assert.Equal(t, "boom", <-leader)
		} else {
			assert.Nil(t, <-leader)
		}
	}
}

func TestCoalesceCallsConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   CoalesceConfig
		field string
	}{
		{CoalesceConfig{Methods: []string{"Check"}}, "grpcmw.CoalesceConfig.Methods[0]"},
		{CoalesceConfig{Methods: []string{unaryMethod, "/a/b/c"}}, "grpcmw.CoalesceConfig.Methods[1]"},
		{CoalesceConfig{Metadata: []string{""}}, "grpcmw.CoalesceConfig.Metadata[0]"},
		{CoalesceConfig{Timeout: -1}, "grpcmw.CoalesceConfig.Timeout"},
		{CoalesceConfig{MaxKeys: -1}, "grpcmw.CoalesceConfig.MaxKeys"},
		{CoalesceConfig{MaxWaiters: -1}, "grpcmw.CoalesceConfig.MaxWaiters"},
		{CoalesceConfig{Descriptors: new(protoregistry.Files)}, "grpcmw.CoalesceConfig.Descriptors"},
	} {
		_, err := Coalesce(tc.cfg)
		require.Error(t, err, tc.field)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), tc.field)
	}
	i, err := Coalesce(CoalesceConfig{})
	require.NoError(t, err)
	assert.NotNil(t, i.Unary)
	assert.NotNil(t, i.Stream)
}

// declared returns a registry that defines grpc.testing.TestService with
// UnaryCall at the idempotency level, as a .proto file's
// "option idempotency_level = ...;" does.
func declared(t *testing.T, level descriptorpb.MethodOptions_IdempotencyLevel) *protoregistry.Files {
	t.Helper()
	msg := func(name string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name)}
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("herdcap_coalesce_test.proto"),
		Package:     proto.String("grpc.testing"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{msg("Req"), msg("Resp")},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("TestService"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("UnaryCall"), InputType: proto.String(".grpc.testing.Req"), OutputType: proto.String(".grpc.testing.Resp"),
				Options: &descriptorpb.MethodOptions{IdempotencyLevel: level.Enum()},
			}},
		}},
	}
	f, err := protodesc.NewFile(fd, new(protoregistry.Files))
	require.NoError(t, err)
	files := new(protoregistry.Files)
	require.NoError(t, files.RegisterFile(f))
	return files
}

// A method declared without side effects is coalesced with no Methods
// list; the declaration is read once.
func TestCoalesceDeclaredNoSideEffects(t *testing.T) {
	const n = 10
	s := newGatedService()
	client, u := coalesceApp(t, CoalesceConfig{NoSideEffects: true, Descriptors: declared(t, descriptorpb.MethodOptions_NO_SIDE_EFFECTS)}, s, nil)
	out := callAll(client, same(n, "hi")...)
	callsInFlight(t, u, 1, n-1)
	close(s.release)
	for range n {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, "hi run 1", r.resp.GetUsername())
	}
	assert.EqualValues(t, 1, s.runs.Load())
	v, ok := u.seen.Load(unaryMethod)
	assert.True(t, ok && v.(bool), "the declaration is remembered")
}
