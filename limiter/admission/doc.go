// Package admission provides reconnect admission: a Gate for new sessions,
// in process or shared by a fleet through Redis, that tells every client
// it refuses when to come back (a booked slot), and lets a client with a
// valid ticket rejoin its session without spending the budget.
//
// # Slots
//
// A new session takes one token from a token bucket of the gate's Limit.
// When there is none, the token is reserved ahead (the bucket goes into
// debt, as with limiter.Request.Wait) and the time it becomes available is
// the client's slot; the client is refused with Decision.RetryAt at its
// slot. When it comes back at or after its slot (and within the slot
// grace) it is let in without asking the bucket again: its token was spent
// when the slot was booked. Coming back early gets the same slot again,
// never a new one. A client is remembered by its client ID alone, so
// clients that carry nothing else work: the memory store keeps the booked
// slots in a bounded table, and Redis keeps one key per booked client,
// which expires after the grace, written by the same Lua script that books
// the slot (one round trip per Admit).
//
// The result is exact: the k-th booked client's slot is k intervals of the
// limit after the bucket ran dry, so returns are flat by construction, not
// on average. Placing clients by cohort into spread windows instead would
// be flat only on average: a window expecting n clients gets n ± √n, and
// 10,000 clients hashed over 20 s put more than 550 into some one-second
// window in most storms.
//
// # Jitter and cohorts
//
// Each client's RetryAt is its slot plus a jitter inside the gap between
// slots (one interval of the limit by default, Config.Jitter), so returns
// stay flat even at fine time scales while no two clients are told the
// same instant. The jitter and the client's cohort (limiter.Cohort, salted
// by Config.Salt or SetSalt, reported in Decision.Cohort) come from one
// salted hash of the client ID, not from a random source: they are sticky,
// the same on every node, reproducible in simulations, and change when the
// salt changes, which should happen per storm so the same clients are not
// always last. Order within the schedule is first come, first served: a
// herd arrives in network order, which no gate can improve on without
// holding requests back.
//
// # Horizon and deferral
//
// Slots are booked at most the horizon ahead (Config.Horizon), so that a
// huge herd cannot book unbounded debt (slots booked for clients that
// never come back are budget lost). A client that arrives when the queue
// is full is deferred: refused without a slot (Booked false) and told to
// come back half a horizon to a horizon after the queue has shrunk to the
// horizon, spread over that half horizon by cohort and jitter; it then
// competes for the slots that opened meanwhile. Deferral keeps the debt
// and the memory bounded (at most rate × horizon booked slots) at the
// price of refusals: deferred clients come back, and are refused, until
// they get a slot, so the gate sees more arrivals than the budget admits
// (about deferred ÷ (0.75 × horizon) per second). Size the horizon to the
// largest herd that should come back flat: herd ÷ rate.
//
// # Paced by headroom
//
// A limit is a ceiling someone configured; the origin's headroom says what
// it can take now. With Config.Headroom (a limiter.Headroom:
// headroom.Origin, or anything that reports the origin's spare calls per
// second), the gate admits at most
//
//	min(limit, Spare / Config.CallsPerSession) sessions per second
//
// as fast as the origin can take, never faster than configured. Spare is
// read lazily: the first Admit that finds the last reading older than
// 100 ms of the gate's clock reads it again (one call, without locks;
// concurrent Admits use the previous reading), so it costs nothing per
// Admit. The paced limit applies at once, without the ramp (the headroom's
// controller already moves at a bounded rate), but never above the
// configured limit, which still ramps; the burst shrinks in proportion, at
// least one. Decision.Limit reports the limit applied; Gate.Limit the
// configured one. A shared gate carries the paced limit with each call, as
// it carries its own. Slots booked earlier keep their times. When the pace
// falls, the bucket's debt is repaid more slowly and new slots go after
// the ones booked; when it rises, the debt is repaid at the new rate, so
// for up to a horizon the clients booked at the slower pace come back
// alongside new ones (at most the old pace on top of the new). A spare of
// 0 (or NaN, or negative) is taken as two sessions per horizon, so that
// refused clients are still told to come back within two horizons; +Inf
// is no cap; a panic in Spare is recovered and counted (and logged through
// SharedConfig.Logger), and the configured limit applies until it answers.
//
// # Tickets
//
// With Config.TicketKeys, every admitted client is given a ticket
// (Decision.Ticket): 34 characters of base64url, safe in headers, cookies
// and gRPC metadata, holding an expiry and an HMAC-SHA256 (truncated to
// 128 bits) over the expiry and the client ID. The ID is bound by the MAC,
// not carried: a ticket does not echo the ID to whoever sees it, and
// verifies only for the client it was issued to (the gate gets the ID from
// the connection). A client that presents a valid ticket for its ID
// rejoins: it is let in without spending the budget, and given a fresh
// ticket. A ticket that is malformed, forged, another client's or expired
// makes the client a new session, never an error. Tickets are bearer
// credentials for their ID until they expire (Config.TicketTTL); they are
// not single-use. Rejoins bypass the budget by design (rejoining must be
// cheap for this to be right); put a separate budget in front of rejoins
// if they are not. Keys rotate without a flag day: the first key signs,
// every key verifies.
//
// # Failure
//
// A shared gate's every Admit passes through the Redis time limit and
// breaker of fleet.Redis, and while Redis cannot answer the failure policy
// decides (SharedConfig.Failure): FailLocal (the default) runs the memory
// store on this node's share of the limit, FailOpen lets everyone in,
// FailClosed refuses with limiter.ErrUnavailable and a RetryAfter spread
// over one to two breaker periods, so that the refused do not all probe
// the moment the breaker half-opens.
package admission
