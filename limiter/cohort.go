package limiter

import (
	"math/bits"

	"github.com/herdcap/herdcap/internal/cohorthash"
)

// MaxCohorts is the most cohorts a rolling schedule may have.
const MaxCohorts = 1 << 20

// Cohort places clientID in one of n cohorts (0 to n-1) for the event salted
// by salt: the "every Nth client" of a rolling change. The placement is
//
//   - sticky: the same (salt, clientID, n) always gives the same cohort, on
//     every node and in every version of herdcap (the hash is part of the
//     contract: FNV-1a 64 over the salt's length, the salt and the client
//     ID, finished with the SplitMix64 mixer, reduced to [0, n) by
//     multiply-high);
//   - salted: a different salt reshuffles every client, so the same clients
//     are not always first;
//   - uniform: over many clients each cohort gets its share.
//
// n below 1 is treated as 1 and above MaxCohorts as MaxCohorts; a type
// that holds a cohort count rejects one outside 1 to MaxCohorts. Cohort
// allocates nothing and is safe for concurrent use.
func Cohort(salt, clientID string, n int) int {
	n = min(max(n, 1), MaxCohorts)
	hi, _ := bits.Mul64(cohorthash.Sum(salt, clientID), uint64(n))
	return int(hi)
}
