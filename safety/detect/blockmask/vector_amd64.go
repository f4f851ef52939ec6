//go:build amd64 && !purego

package blockmask

import "golang.org/x/sys/cpu"

var vector = cpu.X86.HasAVX2

// scanVector is Scan's vector code for n > 0 blocks, when the machine has
// it.
func scanVector(dst0, dst1 []uint64, text []byte, n int, t *Table) bool {
	if !vector {
		return false
	}
	scanAVX2(&dst0[0], &dst1[0], &text[0], n, t)
	return true
}

// scanAVX2 writes the masks of n blocks of text[0:64n] to dst0[0:n] and
// dst1[0:n], the second first, so that dst1 may be dst0.
//
//go:noescape
func scanAVX2(dst0, dst1 *uint64, text *byte, n int, t *Table)
