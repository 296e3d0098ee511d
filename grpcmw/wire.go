package grpcmw

// The herdcap metadata keys. They carry the same values as the HTTP header
// fields of package httpmw (Herdcap-Client and so on), so that one client
// library or gateway can speak both.
const (
	// MetadataClient (request) carries the client's ID: 1 to
	// MaxClientMetadataLen bytes of visible ASCII (0x21 to 0x7E) other
	// than the comma, one value. The invalidation and admission
	// interceptors use it, when no WithKeyFunc is set, to place the client
	// in cohorts and admission slots; without it they use PeerIP. It is
	// self-asserted: use WithKeyFunc to key by an authenticated identity.
	// A malformed value gets codes.InvalidArgument.
	MetadataClient = "herdcap-client"

	// MetadataEpoch (request) carries the highest invalidation epoch the
	// client has applied, in decimal: 1 to 16 digits, at most
	// invalidate.MaxEpoch, one value. A call without it is from a client
	// that takes no part in invalidation; a malformed one gets
	// codes.InvalidArgument.
	//
	// (response) Sent with MetadataInvalidate: the highest epoch among its
	// notices, which the client records once it has applied them all.
	MetadataEpoch = "herdcap-epoch"

	// MetadataInvalidate (response) tells the client what to drop, in the
	// format of httpmw.HeaderInvalidate: each value a structured-field
	// List of notices in epoch order, an Item per notice whose value is
	// the scope (a String, or a Byte Sequence when it is not printable
	// ASCII) with the parameters epoch and id:
	//
	//	herdcap-invalidate: "tag:catalog";epoch=1767225600000;id="catalog-v2"
	//
	// It comes in the response header when the call succeeds (for a
	// stream, with its first message), else in the trailer, which keeps
	// refusals Trailers-Only.
	MetadataInvalidate = "herdcap-invalidate"

	// MetadataResume carries a session ticket (admission.Config.TicketKeys): in the
	// response of an admitted call or stream, the token to present next
	// time (header on success, trailer otherwise); in a request, the token
	// the client holds. A missing, malformed, expired or foreign token
	// makes the call a new session; it is never an error.
	MetadataResume = "herdcap-resume"
)

// Limits of the herdcap metadata.
const (
	// MaxClientMetadataLen is the longest MetadataClient value accepted,
	// in bytes; the same as httpmw.MaxClientHeaderLen.
	MaxClientMetadataLen = 256
)
