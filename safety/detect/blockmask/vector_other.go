//go:build !amd64 || purego

package blockmask

const vector = false

func scanVector(dst0, dst1 []uint64, text []byte, n int, t *Table) bool { return false }
