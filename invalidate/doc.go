// Package invalidate rolls cache invalidations out to clients in paced,
// cohort-by-cohort waves that any node of a fleet can advance, pause or
// abort.
//
// # Rollouts and waves
//
// An invalidation is a Rollout: an ID (the idempotency key), a Scope the
// clients understand (opaque to herdcap), an epoch, a number of cohorts and
// a fleet-wide Rate in clients per second. Each client belongs to one
// cohort, limiter.Cohort(rollout ID, client ID, Cohorts): sticky, and
// reshuffled for every rollout. Cohorts are released in order, 0 first;
// a client is told to drop the scope once its cohort is released. Releases
// happen when a node advances (Coordinator.Run, or Advance called on a
// virtual clock); every advance is one atomic store operation, so any
// number of nodes may advance and each cohort is released once.
//
// The pace: a cohort takes
//
//	interval = max(Population / (Cohorts × Rate), MinDuration / Cohorts)
//
// of running time, where Population is the largest of Rollout.Clients, the
// store's estimate of distinct clients seen, Config.PopulationFloor, and any
// earlier value for this rollout. Running time is banked as it passes and
// spent one interval per cohort; the bank never holds more than one interval
// plus one advance interval, so a steady cadence of advances loses no time
// (a rollout keeps its schedule whatever the ratio of the two intervals) and
// after any gap at most one wave is released: one cohort plus Rate × advance
// interval clients. The notices a fleet hands out therefore stay within the
// budget plus one wave over any window, and a rollout never finishes faster
// than Population/Rate or MinDuration.
//
// Pause stops releases fleet-wide at once; Resume counts progress from the
// moment it is called (paused time is not progress). Abort is final: clients
// of cohorts released before it are still told, the others never are. A
// health input (Config.Health) holds every running rollout while any node
// sees the origin in trouble; held time is not progress either.
//
// # Paced by headroom
//
// Rate is a ceiling the caller guesses; the origin's headroom says what it
// can take now. With Config.Headroom (a limiter.Headroom: headroom.Origin,
// or anything that reports the origin's spare calls per second), every
// advance reads the spare once and paces every running rollout at
//
//	min(Rate, Spare / Config.CallsPerClient) clients per second
//
// so a cohort then takes max(Population / (Cohorts × that pace),
// MinDuration / Cohorts) of running time: as fast as the origin can take,
// never faster than Rate, and never faster than MinDuration (nor the
// guard's): headroom can slow a suspect rollout, never speed it up. Time
// passed at a lower pace banks proportionally less, so a rollout that was
// slowed keeps what it earned and speeds up as soon as the headroom
// rises. A spare of 0 releases nothing (the time banks nothing) but is not
// a health hold: nothing is logged and Status.HoldUntil stays as it was.
// The pace applies to each running rollout on its own; rollouts running at
// once each take up to the pace, and a headroom controller that sees the
// origin busier lowers the spare in turn. Status reports the rollout's own
// Rate and CohortInterval, not the paced ones.
//
// # The population estimate
//
// Rate is in clients, so the pace needs the number of clients. The caller
// may give it (Rollout.Clients); the store also estimates it: every
// AppendDue call records its client in a per-node HyperLogLog sketch
// (lock-free, no allocation), which each advance merges into a fleet-wide
// sketch (on Redis, a native HyperLogLog, PFMERGE/PFCOUNT). The estimate
// counts the clients seen in the current and previous window
// (Config.PopulationWindow, default 10 minutes), within about 1% (0.81%
// standard error). The larger of the two numbers wins, and a rollout's
// population never falls, so an underestimate cannot speed a rollout up.
// Both stores count with the same estimator and give the same numbers.
//
// A rollout that gives no population (Clients 0) is paced on the estimate
// alone, which is cold at first: a fleet that has only just started, or a
// namespace clients have not polled, has seen almost nobody, and a pace
// computed from that would release everything at once. So such a rollout
// is guarded (below), and releases nothing until it has run for the
// warm-up (Config.PopulationWarmup; default 30 s, or two advance intervals
// if longer): the clients polling meanwhile are counted, and the first
// cohort waits for a warm estimate. A coordinator that does not count
// (Config.PopulationWindow negative) refuses it unless it has a
// Config.PopulationFloor; the floor also bounds every other rollout's pace.
// (This warm-up is of the population estimate only; warming caches is
// another matter.)
//
// # The guard
//
// A rollout whose scope is ScopeAll, whose Coverage (the caller's share of
// clients holding data in the scope) is unknown or above Guard.Share, or
// whose population is unknown, is suspect whoever asks: it is never
// instant (Guard.MinDuration, default 10 minutes, whatever the caller
// asks), it is paced no faster than Guard.MaxRate when set, it needs
// Guard.MinCohorts cohorts, and its starts are budgeted per node and per
// requester, Rollout.By (default 3 per 10 minutes each): a node cannot
// escape its budget by naming new requesters, nor a requester by asking
// other nodes. The default budget is fleet-wide on the Redis store (a
// fleet.Strict on the same Redis) and shared by the coordinators of a
// MemoryStore. An over-budget start fails with a *StartRefusedError that
// says whose budget is spent and when to retry; a start the store would
// refuse spends nothing. Every start, refusal, pause, resume and abort is
// logged through slog with who asked ("by": Rollout.By for a start, the By
// given to Pause, Resume and Abort, with its reason) and the node that
// acted.
//
// # Epochs and AppendDue
//
// A client carries one number, the highest epoch it has applied, and asks
// AppendDue(ctx, buf, clientID, applied) what to drop now. Epochs are
// ordered across all scopes of a namespace: the store assigns them from one
// monotonic sequence, max(last + 1, the time in Unix milliseconds), so the
// sequence keeps rising even if Redis loses its data and no node remembers
// it. An explicit Rollout.Epoch must be above every epoch assigned so far
// (ErrEpochBackwards), and at most Config.MaxEpochJump (default one day of
// the sequence) above the store's clock in milliseconds, or just the next
// epoch when the namespace is past that (ErrEpochTooFar): one start can
// neither exhaust the epoch space, which would make every later start fail,
// nor ratchet the bound up by repeating.
//
// AppendDue returns the notices of rollouts above the applied epoch, in
// epoch order, whose cohort for this client is released, and stops at the first
// rollout still pending for it: a later rollout is never delivered before
// an earlier one, so the client records the highest epoch it was given and
// misses nothing. Rollouts aborted before the client's cohort was released
// are skipped. Delivery needs no per-client state, and telling a client
// twice is impossible once it records its epoch.
//
// AppendDue answers from this node's cached copy of the released-wave
// state: at most one store round trip when the copy is older than
// Config.CacheTTL (default 1 s), none otherwise, and no allocation given a
// buffer with room. A release, pause or abort reaches a node's answers
// within its cache TTL or at its next advance, whichever is sooner (and at
// once on the node that made the change). While the store is unreachable
// AppendDue answers from the last copy.
//
// # Durability
//
// The rollout lives in the store, not in the node that started it: if that
// node dies, the others finish it. If Redis restarts empty, every node that
// knew the rollouts notices (the store's generation token changed, or an
// unfinished rollout vanished) and re-registers them at its next advance,
// each with the highest released count it knows; the store keeps the
// largest, keeps a known abort, and restarts the pace from the
// re-registration. Meanwhile AppendDue keeps answering from the nodes'
// copies. A rollout written anew by a re-registration releases nothing for a
// grace (Config.RestoreGrace, default three advance intervals plus the
// store's breaker open period): a node whose view was older than an abort
// re-registers the rollout as running, and the grace lets the node that
// aborted it, which re-registers at its first advance after the loss,
// restore the abort before another cohort goes out. So no client is told of
// a cohort released after an abort, unless the aborting node is lost too
// before any other node read the abort, or stays away longer than the grace.
// To stop a rollout, Abort it: an unfinished rollout whose keys are deleted
// by hand is re-registered by the nodes that know it. Finished rollouts stay
// for Config.Retention (default 24 h) so that clients that were away still
// get their notice.
//
// # Transports
//
// Notice fields are plain strings and a number, ready for a header or
// trailer; the per-request call is AppendDue with a reused buffer. For push
// channels (websockets, gRPC streams), a Pusher sends the due notices to the
// sessions connected to a node, with bounded concurrency and optionally a
// fleet-wide push budget (PushConfig).
//
// # Observing
//
// Rollout events (Config.Observe, observe.Rollout) are reported by every node, each change
// once per node, as it learns it: the node that starts, pauses, resumes or
// aborts a rollout at once (with the reason given), the others when they
// next read the store (an advance, or AppendDue's refresh), without the
// reason, which the store does not keep. Releases and completion are
// reported alike. A node's events so describe the fleet's rollouts as that
// node sees them: a counter summed over nodes counts each change once per
// node, and a rollout a node first sees running is reported started.
//
// # Time
//
// A coordinator takes every time from Config.Clock (nil: the system
// clock): the times the store records, the age of its cache, the
// population window, and Run's timer (Clock.AfterFunc). There is no
// explicit-time twin of Advance: a timer cannot be given a time, so only a
// clock covers both "now" and "later", and a test or the storm simulator
// drives a fleet in virtual time by giving every coordinator the same
// virtual clock and calling Advance (or letting Run wait on the clock).
// Without an injected clock, the Redis store records Redis TIME, so the
// nodes of a fleet agree on time whatever their own clocks say.
//
// # Configuration
//
// NewCoordinator takes a Config, NewPusher a PushConfig and NewRedisStore
// the fleet.Redis every Redis-backed part of herdcap shares; their zero
// values are the defaults, stated on each field, and a field out of range
// is an error wrapping ErrInvalidConfig that names it.
package invalidate
