//go:build !purego

#include "textflag.h"

// AVX2 + FMA kernels behind kernels_amd64.go. Each keeps four independent
// accumulators so that the FMA latency (4 cycles) does not serialise the
// loop, and sums them in a fixed order, so a given pair of vectors always
// gets the same score.

// func dotF32AVX2(a, b *float32, n int) float32
TEXT ·dotF32AVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
f32loop32:
	CMPQ CX, $32
	JL   f32loop8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  f32loop32
f32loop8:
	CMPQ CX, $8
	JL   f32reduce
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  f32loop8
f32reduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
f32tail:
	CMPQ CX, $0
	JE   f32done
	VMOVSS (SI), X1
	VFMADD231SS (DI), X1, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  f32tail
f32done:
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotF32I8AVX2(q *float32, c *int8, n int) float32
// Sums q[i]*float32(c[i]): a full-precision query against int8 codes.
TEXT ·dotF32I8AVX2(SB), NOSPLIT, $0-28
	MOVQ q+0(FP), SI
	MOVQ c+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
i8loop32:
	CMPQ CX, $32
	JL   i8loop8
	VPMOVSXBD (DI), Y4
	VPMOVSXBD 8(DI), Y5
	VPMOVSXBD 16(DI), Y6
	VPMOVSXBD 24(DI), Y7
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ $128, SI
	ADDQ $32, DI
	SUBQ $32, CX
	JMP  i8loop32
i8loop8:
	CMPQ CX, $8
	JL   i8reduce
	VPMOVSXBD (DI), Y4
	VCVTDQ2PS Y4, Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ $32, SI
	ADDQ $8, DI
	SUBQ $8, CX
	JMP  i8loop8
i8reduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
i8tail:
	CMPQ CX, $0
	JE   i8done
	MOVBQSX (DI), AX
	VCVTSI2SSQ AX, X1, X1
	VFMADD231SS (SI), X1, X0
	ADDQ $4, SI
	INCQ DI
	DECQ CX
	JMP  i8tail
i8done:
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotI8AVX2(a, b *int8, n int) int32
// Exact integer dot product of two code vectors; n <= MaxDim keeps every
// lane below 2^31 (8192 * 127 * 127 / 8).
TEXT ·dotI8AVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
ii8loop32:
	CMPQ CX, $32
	JL   ii8loop16
	VPMOVSXBW (SI), Y4
	VPMOVSXBW (DI), Y5
	VPMADDWD Y5, Y4, Y4
	VPADDD Y4, Y0, Y0
	VPMOVSXBW 16(SI), Y6
	VPMOVSXBW 16(DI), Y7
	VPMADDWD Y7, Y6, Y6
	VPADDD Y6, Y1, Y1
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $32, CX
	JMP  ii8loop32
ii8loop16:
	CMPQ CX, $16
	JL   ii8reduce
	VPMOVSXBW (SI), Y4
	VPMOVSXBW (DI), Y5
	VPMADDWD Y5, Y4, Y4
	VPADDD Y4, Y0, Y0
	ADDQ $16, SI
	ADDQ $16, DI
	SUBQ $16, CX
	JMP  ii8loop16
ii8reduce:
	VPADDD Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	VPHADDD X0, X0, X0
	VPHADDD X0, X0, X0
	VMOVD X0, R8
ii8tail:
	CMPQ CX, $0
	JE   ii8done
	MOVBLSX (SI), AX
	MOVBLSX (DI), BX
	IMULL BX, AX
	ADDL AX, R8
	INCQ SI
	INCQ DI
	DECQ CX
	JMP  ii8tail
ii8done:
	VZEROUPPER
	MOVL R8, ret+24(FP)
	RET

// func prefetch(p *byte, n int)
// Asks for the n bytes at p, one cache line at a time, ahead of their use.
TEXT ·prefetch(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
pfloop:
	CMPQ CX, $0
	JLE  pfdone
	PREFETCHT0 (SI)
	ADDQ $64, SI
	SUBQ $64, CX
	JMP  pfloop
pfdone:
	RET

DATA nibmask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nibmask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL nibmask<>(SB), RODATA|NOPTR, $16
DATA nibeight<>+0(SB)/8, $0x0808080808080808
DATA nibeight<>+8(SB)/8, $0x0808080808080808
GLOBL nibeight<>(SB), RODATA|NOPTR, $16

// func dotF32NibAVX2(q *float32, nib *uint8, n int) float32
// Sums q[i]*r[i] for signed 4-bit r packed two per byte (even i in the low
// nibble), n a multiple of 16.
TEXT ·dotF32NibAVX2(SB), NOSPLIT, $0-28
	MOVQ q+0(FP), SI
	MOVQ nib+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VMOVDQU nibmask<>(SB), X14
	VMOVDQU nibeight<>(SB), X15
nibloop:
	CMPQ CX, $16
	JL   nibdone
	VMOVQ (DI), X4
	VPSRLW $4, X4, X5
	VPAND X14, X4, X4
	VPAND X14, X5, X5
	VPUNPCKLBW X5, X4, X4
	VPXOR X15, X4, X4
	VPSUBB X15, X4, X4
	VPMOVSXBD X4, Y6
	VPSRLDQ $8, X4, X7
	VPMOVSXBD X7, Y7
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VFMADD231PS (SI), Y6, Y0
	VFMADD231PS 32(SI), Y7, Y1
	ADDQ $64, SI
	ADDQ $8, DI
	SUBQ $16, CX
	JMP  nibloop
nibdone:
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET
