package invalidate

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// The population estimate is a HyperLogLog with Redis's geometry: 2^14
// registers of 6 bits, the register chosen by the low 14 bits of a 64-bit
// hash and its value one more than the trailing zeros of the other 50 (as
// Redis does). Each node keeps a sketch of the client IDs its Due calls see,
// and sends it with its advances; the Redis store merges it into a native
// HyperLogLog (PFMERGE) and counts with PFCOUNT, the memory store merges it
// into its own registers and counts with hllCount, the same estimator.
const (
	hllP         = 14
	hllRegisters = 1 << hllP
	hllQ         = 64 - hllP
	hllBits      = 6
	hllHeader    = 16
	// hllDenseSize is the length of Redis's dense HyperLogLog string.
	hllDenseSize = hllHeader + hllRegisters*hllBits/8
)

// sketch is a concurrent HyperLogLog: four 8-bit registers per word,
// updated with compare-and-swap, so that recording a client allocates
// nothing and takes no lock.
type sketch struct {
	words [hllRegisters / 4]atomic.Uint32
	dirty atomic.Bool // a register grew since the last take
}

// clientHash is FNV-1a 64 finished with the SplitMix64 mixer: the same on
// every node, so that one client counts once across the fleet.
func clientHash(clientID string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(clientID); i++ {
		h = (h ^ uint64(clientID[i])) * 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// hllPos returns the register and value a hash sets.
func hllPos(h uint64) (int, uint32) {
	return int(h & (hllRegisters - 1)), uint32(bits.TrailingZeros64(h>>hllP|1<<hllQ) + 1)
}

// add records clientID.
func (s *sketch) add(clientID string) {
	idx, rank := hllPos(clientHash(clientID))
	w := &s.words[idx>>2]
	shift := uint(idx&3) * 8
	for {
		old := w.Load()
		if (old>>shift)&0xff >= rank {
			return
		}
		if w.CompareAndSwap(old, old&^(0xff<<shift)|rank<<shift) {
			s.dirty.Store(true)
			return
		}
	}
}

// registers copies the registers out.
func (s *sketch) registers(dst *[hllRegisters]uint8) {
	for i := range s.words {
		w := s.words[i].Load()
		dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = uint8(w), uint8(w>>8), uint8(w>>16), uint8(w>>24)
	}
}

// reset clears the sketch.
func (s *sketch) reset() {
	for i := range s.words {
		s.words[i].Store(0)
	}
	s.dirty.Store(false)
}

// estimate counts the distinct clients recorded.
func (s *sketch) estimate() int64 {
	var r [hllRegisters]uint8
	s.registers(&r)
	return int64(hllCount(&r))
}

// encodeDense returns registers in Redis's dense HyperLogLog encoding:
// "HYLL", encoding 0 (dense), three unused bytes, eight bytes of cached
// cardinality with the top bit set (meaning "not cached"), then the 6-bit
// registers packed least significant bit first.
func encodeDense(r *[hllRegisters]uint8) []byte {
	b := make([]byte, hllDenseSize)
	copy(b, "HYLL")
	b[hllHeader-1] = 0x80
	p := b[hllHeader:]
	for i, v := range r {
		v &= 0x3f
		pos := i * hllBits
		byt, fb := pos/8, uint(pos%8)
		p[byt] |= v << fb
		if fb > 8-hllBits {
			p[byt+1] |= v >> (8 - fb)
		}
	}
	return b
}

// decodeDense parses encodeDense's form (a dense Redis HyperLogLog),
// returning false if b is not one.
func decodeDense(b []byte, r *[hllRegisters]uint8) bool {
	if len(b) != hllDenseSize || string(b[:4]) != "HYLL" || b[4] != 0 {
		return false
	}
	p := b[hllHeader:]
	for i := range r {
		pos := i * hllBits
		byt, fb := pos/8, uint(pos%8)
		v := uint(p[byt]) >> fb
		if fb > 8-hllBits {
			v |= uint(p[byt+1]) << (8 - fb)
		}
		r[i] = uint8(v & 0x3f)
	}
	return true
}

// mergeRegisters sets dst to the register-wise maximum of dst and src: the
// sketch of the union.
func mergeRegisters(dst, src *[hllRegisters]uint8) {
	for i, v := range src {
		if v > dst[i] {
			dst[i] = v
		}
	}
}

// hllCount estimates the cardinality from the registers with Ertl's
// estimator ("New cardinality estimation algorithms for HyperLogLog
// sketches", 2017), the one Redis has used since 5.0, so that both stores
// count alike.
func hllCount(r *[hllRegisters]uint8) uint64 {
	var histo [64]int
	for _, v := range r {
		histo[v&63]++
	}
	m := float64(hllRegisters)
	z := m * hllTau((m-float64(histo[hllQ+1]))/m)
	for j := hllQ; j >= 1; j-- {
		z += float64(histo[j])
		z *= 0.5
	}
	z += m * hllSigma(float64(histo[0])/m)
	return uint64(math.Round(0.5 / math.Ln2 * m * m / z))
}

func hllSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		zp := z
		z += x * y
		y += y
		if zp == z {
			return z
		}
	}
}

func hllTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		zp := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if zp == z {
			return z / 3
		}
	}
}
