// Package bucketkey turns user-supplied limiter keys into bounded, unambiguous
// map keys and Redis keys.
//
// A Redis key is kept verbatim when it is short (at most MaxVerbatim bytes),
// holds no '{' or '}' (which would change a Redis Cluster hash tag) and does
// not start with a NUL byte; an in-process key needs only the first and last
// of these. Any other key is replaced by its SHA-256 digest,
// marked so that no verbatim key can ever equal a digest form. Two different
// user keys therefore never share a bucket (short of a SHA-256 collision),
// and every Redis key built for one user key hashes to one cluster slot.
package bucketkey

import (
	"crypto/sha256"
	"encoding/hex"
)

// MaxVerbatim is the longest key kept as is.
const MaxVerbatim = 128

// verbatim reports whether key can be used as is.
func verbatim(key string) bool {
	if len(key) > MaxVerbatim || (len(key) > 0 && key[0] == 0) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// Local returns the in-process form of key: key itself (without allocating)
// when it is at most MaxVerbatim bytes and does not start with a NUL byte,
// otherwise "\x00" followed by the 32 raw bytes of its SHA-256. Braces are
// kept: they only matter to Redis Cluster, and leaving them spares the hot
// path a scan of the key.
func Local(key string) string {
	if len(key) <= MaxVerbatim && (len(key) == 0 || key[0] != 0) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "\x00" + string(sum[:])
}

// Tag returns the Redis Cluster hash-tag content for key: "k:"+key when
// verbatim, otherwise "h:" and the hex SHA-256 of key. It never contains a
// brace.
func Tag(key string) string {
	if verbatim(key) {
		return "k:" + key
	}
	sum := sha256.Sum256([]byte(key))
	return "h:" + hex.EncodeToString(sum[:])
}

// Redis returns the Redis key for key under prefix and name:
// "prefix:name:{tag}". Every key built for the same user key, whatever the
// prefix and name, hashes to the same cluster slot. prefix and name must not
// contain braces.
func Redis(prefix, name, key string) string {
	return prefix + ":" + name + ":{" + Tag(key) + "}"
}
