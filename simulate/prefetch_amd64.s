#include "textflag.h"

// func prefetchEvents(ev *event, n int, base unsafe.Pointer, stride uintptr)
//
// For each of the n events from ev: PREFETCHT0 base + id*stride, a hint
// that never faults.
TEXT ·prefetchEvents(SB), NOSPLIT, $0-32
	MOVQ ev+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ base+16(FP), DI
	MOVQ stride+24(FP), DX
	TESTQ CX, CX
	JLE done
loop:
	MOVL 8(SI), AX
	IMULQ DX, AX
	PREFETCHT0 (DI)(AX*1)
	ADDQ $16, SI
	DECQ CX
	JNZ loop
done:
	RET
