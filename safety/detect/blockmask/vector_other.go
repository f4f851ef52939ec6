//go:build !amd64 || purego

package blockmask

const vector = false

func scanVector(dst *[2]*uint64, text []byte, n int, t *Table) bool { return false }
