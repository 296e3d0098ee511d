// Package cohorthash is the hash behind limiter.Cohort: one salted 64-bit
// hash of a client ID, shared by the cohort placement and the admission
// gate's jitter so that both come from the same draw.
package cohorthash

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Sum hashes (salt, clientID): FNV-1a 64 over the salt's length, the salt
// and the client ID, finished with the SplitMix64 mixer. It is part of the
// contract of limiter.Cohort (sticky across nodes and versions) and must
// never change. It allocates nothing.
func Sum(salt, clientID string) uint64 {
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
