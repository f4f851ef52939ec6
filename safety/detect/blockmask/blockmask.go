// Package blockmask turns text into bit masks, one uint64 per block of
// sixty-four bytes (bit k for byte k of the block), each marking the bytes
// of one set: digits, special bytes, a detector's anchor bytes. The
// detectors' own scans build such masks eight bytes at a time (SWAR); on
// amd64 with AVX2, Scan builds them thirty-two bytes at a time, and the
// detectors call it when Vector says so.
//
// A Table sorts the bytes by their two nibbles, as simdjson's first stage
// does: each byte's classes are lo[c&15] & hi[c>>4], one bit per class,
// so a set of bytes is a union of products (a set of high nibbles times a
// set of low nibbles), and a table holds up to eight such products.
package blockmask

import "fmt"

// A Table computes the masks of one or two sets of bytes.
type Table struct {
	lo, hi [16]byte // class bits by low and by high nibble
	set    [2]byte  // the class bits of each output
	n      uint8    // how many outputs
}

// Vector reports whether Scan runs vector code on this machine. Without
// it Scan reads a byte at a time, slower than the callers' own SWAR scans,
// which they should keep for that case.
func Vector() bool { return vector }

// New returns the table of one or two sets of bytes: Scan marks in its
// output o the bytes c for which sets[o](c) is true. It fails when the
// sets take more than eight products of nibble sets.
func New(sets ...func(c byte) bool) (*Table, error) {
	if len(sets) == 0 || len(sets) > len(Table{}.set) {
		return nil, fmt.Errorf("blockmask: %d sets, want 1 or 2", len(sets))
	}
	t := &Table{n: uint8(len(sets))}
	bit := 0
	for o, f := range sets {
		// Group the high nibbles by their set of low nibbles: each
		// group, times its set, is one product, one class bit.
		var byLows = map[uint16]byte{}
		var lows [16]uint16
		for h := range 16 {
			for l := range 16 {
				if f(byte(h<<4 | l)) {
					lows[h] |= 1 << l
				}
			}
		}
		for h := range 16 {
			if lows[h] == 0 {
				continue
			}
			b, ok := byLows[lows[h]]
			if !ok {
				if bit == 8 {
					return nil, fmt.Errorf("blockmask: the sets take more than eight nibble products")
				}
				b = 1 << bit
				bit++
				byLows[lows[h]] = b
				for l := range 16 {
					if lows[h]&(1<<l) != 0 {
						t.lo[l] |= b
					}
				}
				t.set[o] |= b
			}
			t.hi[h] |= b
		}
	}
	return t, nil
}

// MustNew is New for tables built once, at start-up.
func MustNew(sets ...func(c byte) bool) *Table {
	t, err := New(sets...)
	if err != nil {
		panic(err)
	}
	return t
}

// Has reports whether output o of t marks c.
func (t *Table) Has(o int, c byte) bool {
	return t.lo[c&15]&t.hi[c>>4]&t.set[o] != 0
}

// Scan writes the masks of the whole blocks of text, as many as fit in
// the destinations: dst[o][k] is output o's mask of text[64k:64k+64]. It
// takes one destination per set of the table, and returns how many blocks
// it wrote.
func (t *Table) Scan(text []byte, dst ...[]uint64) int {
	if len(dst) != int(t.n) {
		panic("blockmask: Scan takes one destination per set")
	}
	n := len(text) / 64
	for _, d := range dst {
		n = min(n, len(d))
	}
	if n == 0 {
		return 0
	}
	var ptr [2]*uint64
	for o := range ptr {
		ptr[o] = &dst[min(o, len(dst)-1)][0]
	}
	if scanVector(&ptr, text, n, t) {
		return n
	}
	scanGeneric(dst, text, n, t)
	return n
}

// ScanAll is Scan that also writes the masks of the last, partial block
// of text (no bits past its end) when the destinations have room for it,
// and returns how many blocks it wrote, that one included.
func (t *Table) ScanAll(text []byte, dst ...[]uint64) int {
	n := t.Scan(text, dst...)
	rest := text[64*n:]
	if len(rest) == 0 || len(rest) >= 64 {
		return n // all of text, or no room for more
	}
	for _, d := range dst {
		if len(d) <= n {
			return n
		}
	}
	for o, d := range dst {
		var w uint64
		for j, c := range rest {
			if t.Has(o, c) {
				w |= 1 << j
			}
		}
		d[n] = w
	}
	return n + 1
}

// scanGeneric is Scan a byte at a time.
func scanGeneric(dst [][]uint64, text []byte, n int, t *Table) {
	for k := range n {
		var w [2]uint64
		for j, c := range text[64*k : 64*k+64] {
			cl := t.lo[c&15] & t.hi[c>>4]
			for o := range dst {
				w[o] |= uint64(min(cl&t.set[o], 1)) << j
			}
		}
		for o, d := range dst {
			d[k] = w[o]
		}
	}
}
