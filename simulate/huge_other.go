//go:build !linux

package simulate

import "unsafe"

// adviseHuge is a no-op where the kernel takes no huge-page advice.
func adviseHuge(unsafe.Pointer, int) {}
