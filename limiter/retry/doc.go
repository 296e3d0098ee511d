// Package retry tells a client when to try again: full-jitter backoff that
// honours a server's hint (Backoff), a retry budget that keeps retries a
// bounded fraction of the traffic (Budget), and the bounds of one call
// (Policy).
//
// # Full jitter
//
// Without a hint from the server, the wait before retry number attempt
// (counted from 0) is uniform in [0, min(Cap, Base·2^attempt)): exponential
// backoff with full jitter. The randomness spreads a herd of clients that
// failed together over the whole window, so that their retries are flat on
// average instead of synchronized, at every attempt; the mean wait is half
// the window.
//
// Indexing: the first retry's whole window is Base. Brooker's full-jitter
// model ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015)
// counts attempts from 1, so his first window is 2·Base: with the same
// base, every herdcap window is half of his. In his optimistic-concurrency
// simulation the smaller windows cost about 10% more calls for the same
// completion time; to wait as he does, set Base to twice his base.
//
// # Hints and exact slots
//
// With a hint the hint wins, as in gRPC's retry policy: the wait is the
// hint plus a jitter, never less than the hint (an admission slot does not
// open earlier) and never much more (a slot is held only for its grace).
// How much jitter depends on what the hint is:
//
//   - a coarse hint (DelayHint), such as an HTTP Retry-After in whole
//     seconds or a gRPC RetryInfo, which many clients may be told alike:
//     uniform in [0, min(HintJitter·hint, HintJitterMax)), by default 10%
//     of the hint and at most a second, so that clients told the same
//     instant do not come back in lockstep;
//   - an exact slot (DelaySlot), such as an admission decision's wait as
//     the herdcap transports carry it (the gRPC pushback trailer, the
//     millisecond HTTP field): the server has already spread the slots at
//     exactly its rate, so the client comes back at its slot plus only
//     uniform [0, SlotJitter), by default 5 ms. Each return is late by less
//     than SlotJitter, so a window of returns holds at most the slots of a
//     window SlotJitter longer: at 500 slots a second and 5 ms, two or
//     three more than the rate. A proportional jitter would instead smear
//     late slots by up to a second and put the busiest one-second windows
//     some 5 to 10% over the rate.
//
// # Retry budget
//
// A Budget is gRPC's retryThrottling: every failed attempt takes a token,
// every success gives back a fraction of one, and a retry is allowed only
// while more than half the tokens are left. Under total failure, a client
// stops retrying after a handful of failures and sends only its own first
// tries; as successes return, so do retries.
package retry
