package simulate

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks the kernel to back the n bytes at p (the client array)
// with transparent huge pages, where it gives them on request (madvise
// mode, Debian's default): events reach clients in random order, and with
// 4 KiB pages nearly every one is a TLB miss as well as a cache miss (the
// unprotected 1,000,000-client incident: about 10% less CPU). Advice only:
// an error changes nothing but speed.
func adviseHuge(p unsafe.Pointer, n int) {
	const page = 4096
	skip := int(-uintptr(p) & (page - 1))
	n = (n - skip) &^ (page - 1)
	if n <= 0 {
		return
	}
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), syscall.MADV_HUGEPAGE)
}
