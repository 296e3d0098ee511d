// Package observe defines the events herdcap's components report and
// Hooks, the set of optional functions that receive them.
//
// # Hooks, not an interface
//
// Hooks is a struct of optional funcs, one per kind of event, in the
// manner of net/http/httptrace.ClientTrace, rather than an interface with
// a no-op base type to embed. The reasons:
//
//   - Free when unset. A component copies the one func it calls from the
//     Hooks it was given at construction; its hot path then pays a single
//     nil check and nothing else. An interface would cost a dynamic call
//     per decision even when nobody listens, or a type switch to find out.
//   - Additive. A new kind of event is a new field: observers written
//     against an older Hooks keep compiling and simply do not see it, as
//     with an embedded no-op base, but without the base.
//   - Composable. Join combines several observers (metrics, an admin
//     console, a health gate) into one Hooks, calling each in order.
//
// Events are small structs passed by value: reporting one allocates
// nothing, and a hook that keeps an event keeps a copy.
//
// # Rules every component keeps
//
//   - A hook is never called while the component holds a lock of its own,
//     so a hook may call back into the component (read its Limit, pause a
//     rollout) without deadlock.
//   - An event names a policy, an origin, a rollout or a warm-up: never a
//     limiter key, a client ID or a cache key, so that a metric fed from an
//     event cannot grow without bound.
//   - A hook runs on the goroutine of the work it reports (a request's, a
//     timer's) and must be quick and safe for concurrent use; hand slow
//     work to a goroutine of your own.
//   - A component reads the Hooks once, at construction; changing the
//     struct afterwards has no effect.
package observe
