package grpcmw

import "github.com/herdcap/herdcap/internal/wire"

// The herdcap metadata keys: the HTTP header fields of package httpmw in
// lower case, carrying the same values (see the package doc, "Wire
// protocol").
const (
	metadataClient     = "herdcap-client"
	metadataEpoch      = "herdcap-epoch"
	metadataInvalidate = "herdcap-invalidate"
	metadataTicket     = "herdcap-ticket"

	// pushbackTrailer is the trailer through which a server tells grpc-go
	// clients with a retry policy how long to wait before the next
	// attempt, in whole milliseconds (gRPC A6). Clients honour it only on
	// a Trailers-Only response.
	pushbackTrailer = "grpc-retry-pushback-ms"
)

// maxClientIDLen is the longest herdcap-client value accepted, in bytes:
// the one bound of client IDs, admission.MaxClientIDLen, which
// wire.MaxClientIDLen is.
const maxClientIDLen = wire.MaxClientIDLen
