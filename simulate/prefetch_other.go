//go:build !amd64

package simulate

import "unsafe"

// prefetchEvents is a no-op where the package has no assembly for it.
func prefetchEvents(*event, int, unsafe.Pointer, uintptr) {}
