package grpcmw

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/invalidate"
)

// Invalidate returns the interceptors that tell clients which cached data
// to drop, as c releases it cohort by cohort; or an error wrapping
// ErrInvalidConfig that names the bad field.
//
// A call takes part when its metadata carries herdcap-epoch, the highest
// epoch the client has applied; calls without it pass untouched. For one
// that does, the interceptors find the client ID (herdcap-client, else
// PeerIP; or InvalidateConfig.Key) and ask c which notices are due (from
// its cache: no store round trip on most calls). When some are, they send
// herdcap-invalidate and herdcap-epoch with the response: in the header
// metadata if the handler succeeds (a stream's, with its first message),
// else in the trailer, so that a refusal further in (a rate limit's
// pushback) still goes out Trailers-Only. Notices released while a stream
// stays open are not sent on it; push them with an invalidate.Pusher.
//
// A malformed herdcap-epoch (not 1 to 16 digits, above 2^53 - 1, or
// repeated) or herdcap-client ends the call with codes.InvalidArgument
// before the handler runs: reading a bad epoch as 0 would tell a broken
// client to drop everything on every call. A coordinator error never fails
// the call: it is logged and the call is served without notices. Key's
// errors end the call as for RateLimit. Health checking and reflection are
// told nothing unless InvalidateConfig.NotifyHealth. The interceptors are
// safe for concurrent use.
func Invalidate(c *invalidate.Coordinator, cfg InvalidateConfig) (Interceptors, error) {
	if c == nil {
		return Interceptors{}, fmt.Errorf("%w: Invalidate's coordinator is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("InvalidateConfig", cfg.Key, cfg.IPv4Prefix, cfg.IPv6Prefix)
	if err != nil {
		return Interceptors{}, configError("", err)
	}
	core, err := serverside.NewNotifier(serverside.NoticeConfig[call]{
		Common:      common("grpcmw: Invalidate", cfg.Skip, cfg.NotifyHealth, cfg.Logger),
		Coordinator: c, Key: key, MaxNotices: cfg.MaxNotices, EpochField: metadataEpoch + " metadata",
	})
	if err != nil {
		return Interceptors{}, configError("InvalidateConfig.", err)
	}
	return interceptors(func(ctx context.Context, method string) (metadata.MD, error) {
		epoch := metadata.ValueFromIncomingContext(ctx, metadataEpoch)
		o := core.Decide(ctx, call{ctx, method}, epoch, epoch != nil)
		switch {
		case o.Verdict == serverside.Pass && o.Value != "":
			return metadata.MD{metadataInvalidate: {o.Value}, metadataEpoch: {o.Epoch}}, nil
		case o.Verdict == serverside.Pass:
			return nil, nil
		case o.Verdict == serverside.BadRequest && !o.KeyErr:
			return nil, errMalformedEpoch
		}
		return nil, statusOf(o.Verdict, o.Err, o.KeyErr, "cannot identify the client", "invalidation misconfigured")
	}), nil
}

// errMalformedEpoch ends a call whose herdcap-epoch is malformed.
var errMalformedEpoch = status.Error(codes.InvalidArgument, "malformed "+metadataEpoch+" metadata")
