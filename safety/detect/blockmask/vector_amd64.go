//go:build amd64 && !purego

package blockmask

import "golang.org/x/sys/cpu"

var vector = cpu.X86.HasAVX2

// scanVector is Scan's vector code for n > 0 blocks, when the machine has
// it: output o to dst[o], for the table's outputs.
func scanVector(dst *[2]*uint64, text []byte, n int, t *Table) bool {
	if !vector {
		return false
	}
	scanAVX2(dst, &text[0], n, t)
	return true
}

// scanAVX2 writes the masks of n blocks of text[0:64n], output o's to
// dst[o][0:n], for the t.n outputs of t.
//
//go:noescape
func scanAVX2(dst *[2]*uint64, text *byte, n int, t *Table)
