package limiter

import (
	"fmt"
	"math/bits"
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
//   - uniform: over many clients each cohort gets its share (the tests run a
//     chi-square test over 1,000,000 IDs).
//
// n below 1 is treated as 1 and above MaxCohorts as MaxCohorts; types that
// hold a cohort count validate it with ValidateCohorts. Cohort allocates
// nothing and is safe for concurrent use.
func Cohort(salt, clientID string, n int) int {
	n = min(max(n, 1), MaxCohorts)
	hi, _ := bits.Mul64(cohortHash(salt, clientID), uint64(n))
	return int(hi)
}

// ValidateCohorts reports whether n is a usable cohort count (1 to
// MaxCohorts); the error names field.
func ValidateCohorts(field string, n int) error {
	if n < 1 || n > MaxCohorts {
		return fmt.Errorf("%s must be between 1 and %d, got %d", field, MaxCohorts, n)
	}
	return nil
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func cohortHash(salt, clientID string) uint64 {
	h := uint64(fnvOffset)
	for l := uint64(len(salt)); ; l >>= 8 { // the length keeps ("ab","c") apart from ("a","bc")
		h = (h ^ (l & 0xff)) * fnvPrime
		if l < 0x100 {
			break
		}
	}
	for i := 0; i < len(salt); i++ {
		h = (h ^ uint64(salt[i])) * fnvPrime
	}
	for i := 0; i < len(clientID); i++ {
		h = (h ^ uint64(clientID[i])) * fnvPrime
	}
	// SplitMix64's finaliser: every input bit reaches every output bit.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
