package httpmw

// The herdcap header fields. Header names are case-insensitive; these are
// the canonical forms net/http uses as map keys.
const (
	// HeaderClient (request) carries the client's ID: 1 to MaxClientHeaderLen
	// bytes of visible ASCII (0x21 to 0x7E) other than the comma, in one
	// field line. Invalidate and Admit use it, when no WithKeyFunc is set,
	// to place the client in cohorts and admission slots; without it they
	// use the client IP address. It is self-asserted: a client may name
	// any ID, which moves it to another cohort or slot but gets it nothing
	// a new ID would not. Use WithKeyFunc to key by an authenticated
	// identity instead. A malformed value gets 400 Bad Request.
	HeaderClient = "Herdcap-Client"

	// HeaderEpoch (request) carries the highest invalidation epoch the
	// client has applied, in decimal: 1 to 16 digits, at most
	// invalidate.MaxEpoch, in one field line. A request without it is from
	// a client that takes no part in invalidation, and Invalidate leaves
	// it alone; a malformed one gets 400 Bad Request.
	//
	// (response) Set with HeaderInvalidate: the highest epoch among its
	// notices, which the client records as applied once it has applied
	// them all. A client that does not read the notices one by one may
	// drop everything it caches and record this epoch.
	HeaderEpoch = "Herdcap-Epoch"

	// HeaderInvalidate (response) tells the client what to drop: a
	// structured-field List (RFC 9651) of notices in epoch order, each an
	// Item whose value is the scope, with the parameters epoch (an
	// Integer) and id (the rollout ID):
	//
	//	Herdcap-Invalidate: "tag:catalog";epoch=1767225600000;id="catalog-v2", "*";epoch=1767225600001;id="oops-1"
	//
	// A scope or ID that is printable ASCII is a String, anything else a
	// Byte Sequence (:base64:). An epoch above 15 digits, which a
	// structured-field Integer cannot carry, is sent as a String of its
	// digits. Parameters other than epoch and id are reserved: clients
	// must ignore them.
	HeaderInvalidate = "Herdcap-Invalidate"

	// HeaderResume carries a session ticket (admission.Config.TicketKeys): in a
	// response from Admit, the token an admitted client presents on its
	// next request; in a request, the token the client holds. A missing,
	// malformed, expired or foreign token makes the request a new
	// session; it is never an error.
	HeaderResume = "Herdcap-Resume"

	// HeaderRetryAfterMillis (response) accompanies Retry-After on Admit's
	// refusals: the exact wait in milliseconds (at least 1), where
	// Retry-After carries it rounded up to whole seconds. Clients that
	// understand it (Transport) come back at their admission slot instead
	// of on the next whole second, which keeps returns flat.
	HeaderRetryAfterMillis = "Herdcap-Retry-After-Ms"
)

// Limits of the herdcap header fields.
const (
	// MaxClientHeaderLen is the longest HeaderClient value accepted, in
	// bytes; the same as grpcmw.MaxClientMetadataLen.
	MaxClientHeaderLen = 256
)
