package encoded

import (
	"encoding/binary"
	"math/bits"
)

// Finding runs eight bytes at a time. Most text has a byte that cannot be
// in a run (a space, a bracket, a non-ASCII byte) every few bytes, and a
// run long enough to decode holds two whole eight-byte words of run bytes
// wherever the words are counted from.

const (
	ones = 0x0101010101010101
	lo7  = 0x7f7f7f7f7f7f7f7f
	hi   = 0x8080808080808080
)

// outside has the high bit of each byte of x outside '+'-'z' (0x2B-0x7A),
// where every run character lies: with x7 the low seven bits of each
// byte, x7 + 0x55 has the high bit set where the byte is at least '+',
// x7 + 0x05 where it is above 'z' (no carry crosses a byte). A byte with
// its own high bit set is outside.
func outside(x uint64) uint64 {
	x7 := x & lo7
	return (^(x7 + 0x55*ones) | (x7 + 0x05*ones) | x) & hi
}

// nonRun has the high bit of each byte of x that is not a run character:
// (x7 ^ b*ones) + lo7 has the high bit set where the byte is not b,
// (x7 ^ '0'*ones) + 0x76 where it is not a digit, and with l = x7|0x20,
// l + 0x1F and l + 0x05 where it is at least 'a' and above 'z'.
func nonRun(x uint64) uint64 {
	x7 := x & lo7
	l := x7 | 0x20*ones
	not := ((x7 ^ '0'*ones) + 0x76*ones) & (^(l + 0x1F*ones) | (l + 0x05*ones)) &
		((x7 ^ '+'*ones) + lo7) & ((x7 ^ '/'*ones) + lo7) & ((x7 ^ '-'*ones) + lo7) & ((x7 ^ '_'*ones) + lo7)
	return (not | x) & hi
}

// nonHex has the high bit of each byte of x that is not a hex digit: as in
// nonRun, with l + 0x19 above 'f'.
func nonHex(x uint64) uint64 {
	x7 := x & lo7
	l := x7 | 0x20*ones
	not := ((x7 ^ '0'*ones) + 0x76*ones) & (^(l + 0x1F*ones) | (l + 0x19*ones))
	return (not | x) & hi
}

// skipShort returns the first place at or after i where a run of
// minBase64 or more may start: i, or just after a byte that is not in a
// run. It walks eight-byte words from i and stops at two in a row that
// hold only bytes inside '+'-'z'; a run starting before the last byte
// outside found on the way would end there, holding no such pair, so it
// is too short. Where the second word of a pair has a byte outside, no
// pair holds it and the walk moves on by both words, without looking at
// the first.
func skipShort(text []byte, i int) int {
	n := len(text)
	var last uint64 // the outside bytes of the last word with some, at lastAt
	lastAt := -1
	for j := i; j+16 <= n; {
		if b := outside(binary.LittleEndian.Uint64(text[j+8:])); b != 0 {
			last, lastAt = b, j+8
			j += 16
			continue
		}
		if a := outside(binary.LittleEndian.Uint64(text[j:])); a != 0 {
			last, lastAt = a, j
			j += 8
			continue
		}
		break
	}
	if lastAt < 0 {
		return i
	}
	return lastAt + (63-bits.LeadingZeros64(last))>>3 + 1
}

// runEnd returns the end of the run starting at i (i itself when text[i]
// is not in a run), eight bytes at a time while it lasts.
func runEnd(text []byte, i int) int {
	n := len(text)
	for i+8 <= n {
		if m := nonRun(binary.LittleEndian.Uint64(text[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < n && run[text[i]] {
		i++
	}
	return i
}
