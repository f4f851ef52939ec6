package secret

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect/blockmask"
)

// anchors are the bytes the rules start looking from; Find sorts the
// candidates.
const anchors = "AJ_-.=:G,"

// scan appends the candidates starting at or after from that are matches or
// still open. Anchors from lo on are examined, so that an assignment
// operator just before from can still produce a value after it.
//
// The text is taken in blocks. In most text the anchors are a few in a
// hundred bytes, and bytes.IndexByte (vector instructions) finds each kind
// far faster than a look at every byte; the frequent '.' and 'G' are
// found by the rarer bytes after them ('/' of "hooks.slack.com/", 'R' of
// "GR1348941"). A block dense with anchors (minified JSON, code) is
// searched eight bytes at a time instead (anchorMask). Either way the
// anchors of a block are visited in order.
func scan(text []byte, from, lo int, cs []cand) []cand {
	n := len(text)
	add := func(c cand) {
		// A match must end on a rune boundary: one followed by a stray
		// continuation byte (invalid UTF-8) is not reported.
		if c.ok && c.end < n && !utf8.RuneStart(text[c.end]) {
			c.ok = false
		}
		if c.start >= from && (c.ok || c.open) {
			cs = append(cs, c)
		}
	}
	var marks [block / 64]uint64
	for s := lo; s < n; s += block {
		e := min(n, s+block)
		if !markAnchors(text, s, e, &marks) {
			scanDense(text, s, e, add)
			continue
		}
		for w, m := range marks {
			for ; m != 0; m &= m - 1 {
				anchor(text, s+w*64+bits.TrailingZeros64(m), add)
			}
		}
	}
	return cs
}

const (
	// block is how many bytes scan takes at a time; maxSearched how many
	// bytes.IndexByte hits a block may have before it is searched eight
	// bytes at a time instead.
	block, maxSearched = 4096, block / 32
	// slackHost ends the slack-webhook prefix before its '/'.
	slackHost = "hooks.slack.com"
)

// searched are the bytes markAnchors looks for, and how far before each the
// anchor it stands for lies.
var searched = [...]struct {
	c    byte
	back int
}{{':', 0}, {'=', 0}, {',', 0}, {'-', 0}, {'A', 0}, {'J', 0}, {'_', 0}, {'/', len(slackHost) - 5}, {'R', 1}}

// markAnchors sets the bits in marks of the anchors in text[s:e] (a
// superset of them: anchor rules out the rest), or reports false when
// there are more than maxSearched to look at.
func markAnchors(text []byte, s, e int, marks *[block / 64]uint64) bool {
	if vector {
		return markAnchorsVector(text, s, e, marks)
	}
	clear(marks[:])
	n, hits := len(text), 0
	for _, a := range searched {
		end := min(n, e+a.back)
		for j := s + a.back; j < end; j++ {
			k := bytes.IndexByte(text[j:end], a.c)
			if k < 0 {
				break
			}
			if hits++; hits > maxSearched {
				return false
			}
			j += k
			p := j - a.back
			if !searchedAt(text, a.c, p, j) {
				continue
			}
			marks[(p-s)>>6] |= 1 << ((p - s) & 63)
		}
	}
	return true
}

// searchedAt reports whether the searched byte c at text[j] stands for an
// anchor at p.
func searchedAt(text []byte, c byte, p, j int) bool {
	switch c {
	case '/':
		return p >= 5 && string(text[p-5:j]) == slackHost
	case 'R':
		return text[p] == 'G'
	}
	return true
}

// vector is whether markAnchors finds the searched bytes with
// blockmask's vector scan, one pass for all of them, rather than with a
// bytes.IndexByte pass for each (tests turn it off).
var vector = blockmask.Vector()

// searchedMask is the blockmask table of the searched bytes, back their
// offsets.
var searchedMask, back = func() (*blockmask.Table, [256]int8) {
	var is [256]bool
	var back [256]int8
	for _, a := range searched {
		is[a.c], back[a.c] = true, int8(a.back)
	}
	return blockmask.MustNew(func(c byte) bool { return is[c] }), back
}()

// markAnchorsVector is markAnchors with the searched bytes of
// text[s:e+back] found in one pass, as bit masks: the same hits, counted
// the same way.
func markAnchorsVector(text []byte, s, e int, marks *[block / 64]uint64) bool {
	clear(marks[:])
	const most = len(slackHost) - 5 // the largest back
	end := min(len(text), e+most)
	var found [block/64 + 1]uint64
	searchedMask.ScanAll(text[s:end], found[:])
	hits := 0
	for w, m := range found {
		for ; m != 0; m &= m - 1 {
			j := s + w*64 + bits.TrailingZeros64(m)
			c := text[j]
			p := j - int(back[c])
			if p < s || p >= e {
				continue // its anchor lies outside the block
			}
			if hits++; hits > maxSearched {
				return false
			}
			if searchedAt(text, c, p, j) {
				marks[(p-s)>>6] |= 1 << ((p - s) & 63)
			}
		}
	}
	return true
}

// scanDense runs the rules at the anchors in text[s:e], eight bytes at a
// time.
func scanDense(text []byte, s, e int, add func(cand)) {
	i := s
	for ; i+8 <= e; i += 8 {
		for m := anchorMask(binary.LittleEndian.Uint64(text[i:])); m != 0; m &= m - 1 {
			anchor(text, i+bits.TrailingZeros64(m)>>3, add)
		}
	}
	for ; i < e; i++ {
		if isAnchor[text[i]] {
			anchor(text, i, add)
		}
	}
}

// anchor runs the rules at the anchor byte text[i].
func anchor(text []byte, i int, add func(cand)) {
	switch c := text[i]; {
	case c == '.' && (i < 5 || text[i-1] != 's'), c == 'G' && (i+1 == len(text) || text[i+1] != 'R'):
		// The frequent '.' and 'G' anchor only ".slack.com/" after
		// "hooks" and "GR1348941": ruled out here, without a call.
	default:
		check(text, i, add)
	}
}

const (
	ones = 0x0101010101010101
	lo7  = 0x7f7f7f7f7f7f7f7f
	hi   = 0x8080808080808080
)

// anchorMask has the high bit of each byte of x that is one of anchors,
// but for a '.' not after an 's' (within x: a '.' first in x is kept, for
// anchor to rule out). With x7 the low seven bits of each byte,
// (x7 ^ b*ones) + lo7 has the high bit of a byte set where the byte is not
// b (no carry crosses a byte); ',' and '-' are the bytes 0x2C-0x2D, which
// x7 ^ 0x2C maps to 0-1. A byte with its own high bit set is no anchor.
func anchorMask(x uint64) uint64 {
	x7 := x & lo7
	not := (x7 ^ 0x2C*ones + 0x7E*ones) & (x7 ^ ':'*ones + lo7) & (x7 ^ '='*ones + lo7) & (x7 ^ 'A'*ones + lo7) &
		(x7 ^ 'G'*ones + lo7) & (x7 ^ 'J'*ones + lo7) & (x7 ^ '_'*ones + lo7) &
		(x7 ^ '.'*ones + lo7 | (x7^'s'*ones+lo7)<<8)
	return ^(not | x) & hi
}

// isAnchor has the anchor bytes.
var isAnchor = func() (t [256]bool) {
	for _, c := range []byte(anchors) {
		t[c] = true
	}
	return t
}()
