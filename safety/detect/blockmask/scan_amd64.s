//go:build amd64 && !purego

#include "textflag.h"

// func scanAVX2(dst *[2]*uint64, text *byte, n int, t *Table)
//
// For each block of sixty-four bytes: the class bits of every byte (the
// table's low-nibble row at c&15 ANDed with its high-nibble row at c>>4,
// by VPSHUFB), then for each output the bytes with a class bit of its set
// (VPAND, VPCMPEQB with zero, VPMOVMSKB, NOT) as one uint64.
//
// Table layout: lo at 0, hi at 16, set at 32 (two bytes), n at 34.
// OUTPUT stores at (dst) the mask of the block's bytes with a class bit
// of set (a broadcast register): the class bits of bytes 0..31 are in Y0,
// of 32..63 in Y1, and Y13 is zero. VPCMPEQB with zero marks the bytes
// not in the set, hence the NOT.
#define OUTPUT(set, dst) \
	VPAND set, Y0, Y4; \
	VPAND set, Y1, Y5; \
	VPCMPEQB Y13, Y4, Y4; \
	VPCMPEQB Y13, Y5, Y5; \
	VPMOVMSKB Y4, AX; \
	VPMOVMSKB Y5, BX; \
	SHLQ $32, BX; \
	ORQ BX, AX; \
	NOTQ AX; \
	MOVQ AX, (dst)

TEXT ·scanAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), AX
	MOVQ 0(AX), DI             // dst[0]
	MOVQ 8(AX), R8             // dst[1]
	MOVQ text+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ t+24(FP), AX
	VBROADCASTI128 0(AX), Y8   // Table.lo, in both lanes
	VBROADCASTI128 16(AX), Y9  // Table.hi
	VPBROADCASTB 32(AX), Y10   // Table.set[0]
	VPBROADCASTB 33(AX), Y11   // Table.set[1]
	MOVBQZX 34(AX), DX         // Table.n
	VPBROADCASTB nibble<>(SB), Y12
	VPXOR Y13, Y13, Y13        // zero

loop:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VPSRLW $4, Y0, Y2
	VPSRLW $4, Y1, Y3
	VPAND Y12, Y0, Y0          // low nibbles
	VPAND Y12, Y1, Y1
	VPAND Y12, Y2, Y2          // high nibbles
	VPAND Y12, Y3, Y3
	VPSHUFB Y0, Y8, Y0
	VPSHUFB Y1, Y8, Y1
	VPSHUFB Y2, Y9, Y2
	VPSHUFB Y3, Y9, Y3
	VPAND Y2, Y0, Y0           // class bits of bytes 0..31
	VPAND Y3, Y1, Y1           // and of 32..63

	OUTPUT(Y10, DI)
	CMPQ DX, $2
	JB next
	OUTPUT(Y11, R8)

next:
	ADDQ $64, SI
	ADDQ $8, DI
	ADDQ $8, R8
	DECQ CX
	JNZ loop
	VZEROUPPER
	RET

DATA nibble<>+0(SB)/1, $0x0f
GLOBL nibble<>(SB), RODATA|NOPTR, $1
