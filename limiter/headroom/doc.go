// Package headroom adapts one limit per origin to what the origin can
// take, measured from the outcomes of the calls made to it, in one
// process or for a whole fleet through Redis.
package headroom
