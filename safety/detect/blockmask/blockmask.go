// Package blockmask turns text into bit masks, one uint64 per block of
// sixty-four bytes (bit k for byte k of the block), each mask marking the
// bytes of one class: digits, special bytes, letters and digits. The
// detectors' own scans build the same masks eight bytes at a time (SWAR);
// on amd64 with AVX2, Scan builds them thirty-two bytes at a time, and
// those scans call it where Vector says it pays.
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
}

// Vector reports whether Scan runs vector code on this machine. Without
// it Scan reads a byte at a time, slower than the callers' own SWAR scans,
// which they should keep for that case.
func Vector() bool { return vector }

// New returns the table of the sets in and, when two is not nil, two:
// Scan marks in its first output the bytes for which in is true, in its
// second those for which two is. It fails when the sets take more than
// eight products of nibble sets.
func New(in, two func(c byte) bool) (*Table, error) {
	t := new(Table)
	bit := 0
	for o, f := range [2]func(byte) bool{in, two} {
		if f == nil {
			t.set[1] = t.set[0]
			break
		}
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
func MustNew(in, two func(c byte) bool) *Table {
	t, err := New(in, two)
	if err != nil {
		panic(err)
	}
	return t
}

// Has reports whether output o (0 or 1) of t marks c.
func (t *Table) Has(o int, c byte) bool {
	return t.lo[c&15]&t.hi[c>>4]&t.set[o] != 0
}

// Scan writes the masks of the whole blocks of text, as many as fit in
// dst0 and dst1 (which may be the same slice when there is one set):
// dst0[k] the first output's of text[64k:64k+64], dst1[k] the second's.
// It returns how many blocks it wrote.
func (t *Table) Scan(dst0, dst1 []uint64, text []byte) int {
	n := min(len(text)/64, len(dst0), len(dst1))
	if n == 0 {
		return 0
	}
	if scanVector(dst0, dst1, text, n, t) {
		return n
	}
	scanGeneric(dst0[:n], dst1[:n], text, t)
	return n
}

// scanGeneric is Scan a byte at a time.
func scanGeneric(dst0, dst1 []uint64, text []byte, t *Table) {
	for k := range dst0 {
		var w0, w1 uint64
		for j, c := range text[64*k : 64*k+64] {
			cl := t.lo[c&15] & t.hi[c>>4]
			w0 |= uint64(min(cl&t.set[0], 1)) << j
			w1 |= uint64(min(cl&t.set[1], 1)) << j
		}
		dst1[k] = w1
		dst0[k] = w0
	}
}
