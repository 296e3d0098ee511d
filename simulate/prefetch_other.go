//go:build !amd64

package simulate

import "unsafe"

// prefetch is a no-op where the package has no assembly for it.
func prefetch(unsafe.Pointer) {}
