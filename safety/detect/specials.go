package detect

import (
	"encoding/binary"
	"math/bits"

	"github.com/warden-llm/warden/safety/detect/blockmask"
)

// Specials is the shared scan of one text for its special bytes, those
// that are not printable ASCII, tab or a line break: bytes >= 0x80, the
// other C0 controls and DEL. The filter engine scans a text once and hands
// the result to the detectors that read the raw bytes (SpecialFinder:
// hidden Unicode, confusables and control sequences start only at special
// bytes) and to the literal view, which copies the printable ASCII
// between them.
//
// The scan is a bit set, one bit per byte of text, so it takes len/8
// bytes whatever the text holds.
type Specials struct {
	text []byte
	bits []uint64 // bit i%64 of bits[i/64] is set when text[i] is special
}

// A SpecialFinder is a Detector every match of which holds a special byte
// (see Specials), so that it can step from one special byte to the next.
// FindSpecial is Find with the text's special bytes known: sp was built by
// Scan over the same text. Find and FindSpecial report the same matches.
type SpecialFinder interface {
	Detector
	FindSpecial(text []byte, from int, sp *Specials, report func(Match))
}

var specialBit = func() (t [256]uint8) {
	for c := range 256 {
		if !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') {
			t[c] = 1
		}
	}
	return t
}()

// vector is whether Specials.Scan and Digits.Scan use blockmask's vector
// scan rather than their own eight bytes at a time (tests turn it off).
var vector = blockmask.Vector()

// specialMask is specialBit's blockmask table.
var specialMask = blockmask.MustNew(func(c byte) bool { return specialBit[c] != 0 })

// maybeSpecial has the high bit of each byte of x that may be special: of
// every special byte, and of tabs, line breaks and bytes right after a
// special byte (through borrows and carries), which exact tells apart.
func maybeSpecial(x uint64) uint64 {
	const lo = 0x0101010101010101
	return (x | (x - lo*0x20) | (x + lo)) & hi
}

// exact returns the special bytes among the eight of b as a bit set, bit
// k for b[k], given m, their maybeSpecial mask.
func exact(b []byte, m uint64) uint64 {
	if m == 0 {
		return 0
	}
	_ = b[7]
	return uint64(specialBit[b[0]]) | uint64(specialBit[b[1]])<<1 | uint64(specialBit[b[2]])<<2 |
		uint64(specialBit[b[3]])<<3 | uint64(specialBit[b[4]])<<4 | uint64(specialBit[b[5]])<<5 |
		uint64(specialBit[b[6]])<<6 | uint64(specialBit[b[7]])<<7
}

// Scan records the special bytes of text, reusing s's memory.
func (s *Specials) Scan(text []byte) {
	s.text = text
	n := (len(text) + 63) / 64
	if cap(s.bits) < n {
		s.bits = make([]uint64, n, n+n/8)
	}
	s.bits = s.bits[:n]
	i := 0
	if vector {
		// bits has room for the last, partial block: ScanAll writes it.
		i = 64 * specialMask.ScanAll(text, s.bits)
	}
	for ; i+64 <= len(text); i += 64 {
		b := text[i : i+64 : i+64]
		x0, x1 := binary.LittleEndian.Uint64(b[0:8]), binary.LittleEndian.Uint64(b[8:16])
		x2, x3 := binary.LittleEndian.Uint64(b[16:24]), binary.LittleEndian.Uint64(b[24:32])
		x4, x5 := binary.LittleEndian.Uint64(b[32:40]), binary.LittleEndian.Uint64(b[40:48])
		x6, x7 := binary.LittleEndian.Uint64(b[48:56]), binary.LittleEndian.Uint64(b[56:64])
		m0, m1, m2, m3 := maybeSpecial(x0), maybeSpecial(x1), maybeSpecial(x2), maybeSpecial(x3)
		m4, m5, m6, m7 := maybeSpecial(x4), maybeSpecial(x5), maybeSpecial(x6), maybeSpecial(x7)
		var w uint64
		if m0|m1|m2|m3|m4|m5|m6|m7 != 0 {
			w = exact(b[0:8], m0) | exact(b[8:16], m1)<<8 | exact(b[16:24], m2)<<16 | exact(b[24:32], m3)<<24 |
				exact(b[32:40], m4)<<32 | exact(b[40:48], m5)<<40 | exact(b[48:56], m6)<<48 | exact(b[56:64], m7)<<56
		}
		s.bits[i/64] = w
	}
	if i < len(text) {
		var w uint64
		for k, c := range text[i:] {
			w |= uint64(specialBit[c]) << k
		}
		s.bits[i/64] = w
	}
}

// Cap is how many bytes of text s has room for without growing.
func (s *Specials) Cap() int { return 64 * cap(s.bits) }

// Next returns the offset of the first special byte at or after pos, or
// len(text) when there is none.
func (s *Specials) Next(pos int) int {
	pos = max(pos, 0)
	if pos >= len(s.text) {
		return len(s.text)
	}
	w := pos / 64
	if b := s.bits[w] >> (pos % 64); b != 0 {
		return pos + bits.TrailingZeros64(b)
	}
	for w++; w < len(s.bits); w++ {
		if b := s.bits[w]; b != 0 {
			return w*64 + bits.TrailingZeros64(b)
		}
	}
	return len(s.text)
}

// NextSpecial returns the offset of the first special byte of text at or
// after pos, or len(text): Next without a Scan, for one pass.
func NextSpecial(text []byte, pos int) int {
	i := max(pos, 0)
	for ; i+8 <= len(text); i += 8 {
		b := text[i : i+8 : i+8]
		if maybeSpecial(binary.LittleEndian.Uint64(b)) == 0 {
			continue
		}
		if m := exact(b, hi); m != 0 {
			return i + bits.TrailingZeros64(m)
		}
	}
	for ; i < len(text); i++ {
		if specialBit[text[i]] != 0 {
			return i
		}
	}
	return len(text)
}
