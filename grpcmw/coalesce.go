package grpcmw

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/herdcap/herdcap/internal/serverside"
)

// CoalesceConfig configures Coalesce. The zero value coalesces nothing:
// Methods lists the methods to coalesce, and NoSideEffects adds those whose
// proto definitions say they have none. Calls that carry authorization
// metadata are not coalesced unless Credentials is set, because their
// responses may depend on who asks: one caller's response must never
// reach another.
type CoalesceConfig struct {
	// Methods are the full names ("/package.Service/Method") of the unary
	// methods to coalesce: methods without side effects, whose response
	// depends only on the request message and the Metadata keys.
	Methods []string
	// NoSideEffects coalesces, besides Methods, every unary method whose
	// proto definition declares it has no side effects:
	//
	//	rpc Get(GetRequest) returns (GetResponse) {
	//	  option idempotency_level = NO_SIDE_EFFECTS;
	//	}
	//
	// gRPC's counterpart of HTTP's safe methods. A method's declaration is
	// read from Descriptors on its first call and remembered. A method
	// declared IDEMPOTENT is not coalesced by this: repeating it is
	// harmless, but its response may depend on the state it changes.
	NoSideEffects bool
	// Descriptors is where NoSideEffects reads the methods' definitions.
	// If Descriptors is nil, protoregistry.GlobalFiles, where generated
	// code registers every .proto file compiled into the program.
	Descriptors *protoregistry.Files
	// Metadata names the request metadata keys whose values the key
	// includes (case-insensitive): the metadata the responses vary by.
	Metadata []string
	// Credentials coalesces calls that carry authorization metadata too;
	// the key then includes its values, so that only calls with the same
	// credentials share a response.
	Credentials bool
	// Timeout bounds the leader's handler, whose context keeps the values
	// of the leader's but not its cancellation (see Coalesce). If Timeout
	// is 0, 10 s; it must not be negative.
	Timeout time.Duration
	// MaxKeys is the most keys in flight at once; a call of another key
	// runs uncoalesced. If MaxKeys is 0, 10,000; it must not be negative.
	MaxKeys int
	// MaxWaiters is the most calls waiting on one key's leader; one more
	// runs uncoalesced. If MaxWaiters is 0, 1,000; it must not be
	// negative.
	MaxWaiters int
}

// unaryReplay is a leader's answer as its waiters get it.
type unaryReplay struct {
	resp            any
	err             error
	header, trailer metadata.MD
}

// unaryCoalescer is Coalesce's interceptor state.
type unaryCoalescer struct {
	methods     map[string]bool
	declared    *protoregistry.Files // nil: NoSideEffects unset
	seen        sync.Map             // method -> bool, what declared says
	md          []string
	credentials bool
	c           *serverside.Coalescer[*unaryReplay]
}

// Coalesce returns interceptors that run a unary handler once for
// concurrent identical calls of the methods CoalesceConfig.Methods lists
// (and, with NoSideEffects, those declared without side effects),
// or an error wrapping ErrInvalidConfig that names the bad field. Stream passes every stream through untouched (it is
// there so the pair installs like the others). The interceptors are safe
// for concurrent use.
//
// Calls are identical when their method, request message (marshalled with
// proto's deterministic option) and the values of the Metadata keys are.
// The first call of a key leads: it runs the handler, and every call of
// that key that arrives while it runs waits and then gets the same answer:
// a clone of the leader's response message (never the message itself), or
// its error with the same status, and the header and trailer metadata the
// handler set (grpc.SetHeader, grpc.SendHeader, grpc.SetTrailer: they are
// collected while it runs and set on each call's stream after). The
// leader's handler runs on the leader's goroutine, on a context that keeps
// its values but not its cancellation, bounded by CoalesceConfig.Timeout:
// the leader's client going away does not fail the waiters. A waiter whose
// context ends stops waiting with its status (codes.Canceled or
// codes.DeadlineExceeded); the leader goes on.
//
// A panic in the leader's handler goes on up the leader's goroutine, as
// it would without Coalesce; every waiter gets codes.Internal. A request
// that is not a proto message, or past MaxKeys keys in flight or
// MaxWaiters waiters on a key, runs uncoalesced.
func Coalesce(cfg CoalesceConfig) (Interceptors, error) {
	u, err := newCoalescer(cfg)
	if err != nil {
		return Interceptors{}, err
	}
	return Interceptors{
		Unary: u.intercept,
		Stream: func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, ss)
		},
	}, nil
}

func newCoalescer(cfg CoalesceConfig) (*unaryCoalescer, error) {
	bad := func(format string, args ...any) error {
		return configError("", fmt.Errorf("grpcmw.CoalesceConfig."+format, args...))
	}
	u := &unaryCoalescer{methods: make(map[string]bool, len(cfg.Methods)), credentials: cfg.Credentials}
	switch {
	case cfg.NoSideEffects && cfg.Descriptors != nil:
		u.declared = cfg.Descriptors
	case cfg.NoSideEffects:
		u.declared = protoregistry.GlobalFiles
	case cfg.Descriptors != nil:
		return nil, bad("Descriptors is set but NoSideEffects is not: nothing reads it")
	}
	for i, m := range cfg.Methods {
		if !strings.HasPrefix(m, "/") || strings.Count(m, "/") != 2 || strings.HasSuffix(m, "/") {
			return nil, bad("Methods[%d] must be a full method name (/package.Service/Method), got %q", i, m)
		}
		u.methods[m] = true
	}
	for i, k := range cfg.Metadata {
		if k == "" {
			return nil, bad("Metadata[%d] is empty", i)
		}
		u.md = append(u.md, strings.ToLower(k))
	}
	if cfg.Credentials {
		u.md = append(u.md, "authorization")
	}
	b, err := serverside.CoalesceBounds{Timeout: cfg.Timeout, MaxKeys: cfg.MaxKeys, MaxWaiters: cfg.MaxWaiters}.Resolve("grpcmw.CoalesceConfig")
	if err != nil {
		return nil, configError("", err)
	}
	u.c = serverside.NewCoalescer[*unaryReplay](b)
	return u, nil
}

// keyBufs holds the buffers keys are built in.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// deterministic marshals a request the same way every time.
var deterministic = proto.MarshalOptions{Deterministic: true}

// intercept leads, waits or passes the call through.
func (u *unaryCoalescer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	msg, ok := req.(proto.Message)
	if !ok || !u.coalesces(info.FullMethod) {
		return handler(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if !u.credentials && len(md["authorization"]) > 0 {
		return handler(ctx, req)
	}
	bp := keyBufs.Get().(*[]byte)
	key, err := u.key((*bp)[:0], info.FullMethod, msg, md)
	var f *serverside.Flight[*unaryReplay]
	var leader bool
	if err == nil {
		f, leader = u.c.Join(key)
	}
	*bp = key
	keyBufs.Put(bp)
	switch {
	case f == nil:
		return handler(ctx, req)
	case leader:
		return u.lead(ctx, req, info.FullMethod, handler, f)
	}
	rep, end, err := f.Wait(ctx)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if end != serverside.Shared {
		return nil, status.Error(codes.Internal, "grpcmw: the handler of the call this one was coalesced with failed")
	}
	return rep.answer(ctx, true)
}

// coalesces reports whether calls of method are coalesced: listed, or
// declared without side effects.
func (u *unaryCoalescer) coalesces(method string) bool {
	if u.methods[method] {
		return true
	}
	if u.declared == nil {
		return false
	}
	if v, ok := u.seen.Load(method); ok {
		return v.(bool)
	}
	v := noSideEffects(u.declared, method)
	u.seen.Store(method, v)
	return v
}

// noSideEffects reports whether files defines the full method name
// ("/package.Service/Method") with idempotency_level NO_SIDE_EFFECTS.
func noSideEffects(files *protoregistry.Files, method string) bool {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return false
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(svc + "." + name))
	if err != nil {
		return false
	}
	m, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return false
	}
	opts, ok := m.Options().(*descriptorpb.MethodOptions)
	return ok && opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

// key appends the call's key to b.
func (u *unaryCoalescer) key(b []byte, method string, msg proto.Message, md metadata.MD) ([]byte, error) {
	b = append(b, method...)
	b = append(b, 0)
	b, err := deterministic.MarshalAppend(b, msg)
	if err != nil {
		return b, err
	}
	for _, k := range u.md {
		b = append(b, 0)
		for _, v := range md[k] {
			b = strconv.AppendInt(b, int64(len(v)), 10)
			b = append(b, ':')
			b = append(b, v...)
		}
	}
	return b, nil
}

// lead runs the handler for the flight f and answers the leader's call.
func (u *unaryCoalescer) lead(ctx context.Context, req any, method string, handler grpc.UnaryHandler, f *serverside.Flight[*unaryReplay]) (any, error) {
	dctx, cancel := serverside.Detach(ctx, u.c.Timeout())
	defer cancel()
	cs := &captureStream{method: method}
	dctx = grpc.NewContextWithServerTransportStream(dctx, cs)
	ended := false
	defer func() {
		if !ended {
			u.c.Finish(f, nil, serverside.Panicked) // the panic goes on
		}
	}()
	resp, err := handler(dctx, req)
	ended = true
	cs.mu.Lock()
	rep := &unaryReplay{resp: resp, err: err, header: cs.header, trailer: cs.trailer}
	cs.mu.Unlock()
	u.c.Finish(f, rep, serverside.Shared)
	return rep.answer(ctx, false)
}

// answer sets the handler's metadata on the call's stream and returns its
// response (a clone for a waiter) and error.
func (rep *unaryReplay) answer(ctx context.Context, clone bool) (any, error) {
	if len(rep.header) > 0 {
		_ = grpc.SetHeader(ctx, rep.header)
	}
	if len(rep.trailer) > 0 {
		_ = grpc.SetTrailer(ctx, rep.trailer)
	}
	resp := rep.resp
	if m, ok := resp.(proto.Message); ok && clone && m != nil {
		resp = proto.Clone(m)
	}
	return resp, rep.err
}

// captureStream collects the metadata a leader's handler sets, for the
// leader's call and its waiters alike.
type captureStream struct {
	method          string
	mu              sync.Mutex
	header, trailer metadata.MD
}

// Method returns the call's full method name.
func (s *captureStream) Method() string { return s.method }

// SetHeader collects header metadata.
func (s *captureStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	s.header = metadata.Join(s.header, md)
	s.mu.Unlock()
	return nil
}

// SendHeader collects header metadata; it is sent with the answer.
func (s *captureStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

// SetTrailer collects trailer metadata.
func (s *captureStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	s.trailer = metadata.Join(s.trailer, md)
	s.mu.Unlock()
	return nil
}
