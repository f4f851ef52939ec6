package phrase

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect/blockmask"
)

// The candidate scan (scanBlocks, quiet) reads the raw text in blocks of
// sixty-four bytes into bit masks (with blockmask's vector scan, or eight
// bytes at a time): the block's words (a letter or digit after a byte that
// is neither), its non-ASCII and its marker bytes. Each word's first eight bytes and length come off one
// load and the masks, and the word is looked up by its key (keyBit: those
// bytes in lower case) in a bit set of the first words' keys, without a
// branch. Only a block with something to judge leaves the tight loop: a
// word whose key hits, a word of letters and digits (a digit may read as
// a letter, so its key says nothing), a marker or a non-ASCII byte. A
// word of digits only (in its first eight bytes) reads as digits and
// starts nothing: no start token begins with a digit (newPrefilter
// checks), and startsAt would say no. So the scan takes the same
// candidates as a walk that asks firstWord and startsAt of every word
// (scanTail, used for the last bytes; TestBlocksEqualWalk).

// keyBit maps a word's key to a bit of prefilter.keys. The key is its
// first eight bytes, in lower case, padded with zero bytes: it holds the
// length of a word shorter than eight.
func keyBit(key uint64) uint64 {
	return (key * 0x9e3779b97f4a7c15) >> (64 - 16)
}

// wordKey returns the key of the word of n bytes at text[i:] when it can
// be read off one load: i+8 <= len(text) and no digit in its first eight
// bytes (a digit may read as a letter). Letters are folded to lower case.
func wordKey(text []byte, i, n int) (key uint64, ok bool) {
	if i+8 > len(text) {
		return 0, false
	}
	mask := ^uint64(0)
	if n < 8 {
		mask = 1<<(8*n) - 1
	}
	k := binary.LittleEndian.Uint64(text[i:]) & mask
	if ^k&0x4040404040404040&mask != 0 {
		return 0, false // a digit: letters have bit 0x40, digits do not
	}
	return k | 0x2020202020202020&mask, true
}

// mayBeFirst is the key filter before firstWord: false means text[i:j]
// is not a first word.
func (p *prefilter) mayBeFirst(text []byte, i, j int) bool {
	n := j - i
	if n > p.maxWord {
		return false
	}
	key, ok := wordKey(text, i, n)
	if !ok {
		return true
	}
	b := keyBit(key)
	return p.keys[b/64]&(1<<(b%64)) != 0
}

// markerMask has the high bit of each byte of x that is a marker byte.
func (p *prefilter) markerMask(x uint64) uint64 {
	t0, t1, t2 := x^p.markers[0], x^p.markers[1], x^p.markers[2]
	return (^((t0&lo7 + lo7) | t0) | ^((t1&lo7 + lo7) | t1) | ^((t2&lo7 + lo7) | t2)) & hi
}

// scanner collects the segments of one text.
type scanner struct {
	d       *injectionDetector
	text    []byte
	v       *view
	segs    []segment
	cur     segment
	covered int
	z       zoneEnds
}

// add takes a candidate starting at c (its run of judged text ending at
// last) into the segments.
func (sc *scanner) add(c, last int) {
	e := sc.z.after(last)
	cur := &sc.cur
	if cur.s >= 0 && c < cur.e {
		cur.e = max(cur.e, e)
		return
	}
	// Look for a cut back to the current segment's end, so that every
	// byte is looked at once; without one, the candidate joins the
	// current segment. Position 0 is always a cut.
	s := cutBefore(sc.text, c, max(cur.e, 0))
	if s < 0 || cur.s >= 0 && s <= cur.e {
		cur.e = max(cur.e, e)
		return
	}
	if cur.s >= 0 {
		sc.segs = append(sc.segs, *cur)
		sc.covered += cur.e - cur.s
	}
	*cur = segment{s, e}
}

// over reports whether the segments have grown past what makes them
// cheaper than the whole view: half the text in segments, or a quarter
// of it read again to judge candidates (adversarial text: look-alikes or
// a first word in every word).
func (sc *scanner) over() bool {
	n := len(sc.text)
	return sc.covered+sc.cur.e-sc.cur.s > n/2 || sc.v.spent > n/4
}

// word judges the ASCII word text[i:j].
func (sc *scanner) word(i, j int) {
	// The filter, then the automaton. (A word glued to non-ASCII may read
	// otherwise in the view; the run it is glued to takes care of it
	// unless the run is inert, and then the word reads as it is.)
	if sc.d.pre.isFirst(sc.text, i, j) && sc.d.startsAt(sc.text, i, sc.v) {
		sc.add(i, i)
	}
}

// isFirst is firstWord(text[i:j]), by its key when that is the whole
// word (eight bytes or fewer, no digit).
func (p *prefilter) isFirst(text []byte, i, j int) bool {
	if j-i <= 8 {
		if key, ok := wordKey(text, i, j-i); ok {
			return p.short[key]
		}
	}
	return p.firstWord(text[i:j])
}

// high judges the run of non-ASCII at text[i] and returns its end.
func (sc *scanner) high(i int) int {
	text := sc.text
	j, live := i, false
	for j < len(text) && text[j] >= 0x80 {
		r, size := utf8.DecodeRune(text[j:])
		live = live || !inert(r, size)
		j += size
	}
	if !live || inertWord(text, i, j) {
		return j
	}
	if end, ok := sc.d.pre.plainWord(text, i); ok {
		return end
	}
	if k, yes := sc.d.runStarts(text, i, j, sc.v); yes {
		sc.add(i, k)
	}
	return j
}

// segments appends to segs the segments of text that may hold a match
// starting at or after from. ok is false when Find must scan the whole
// text instead.
func (d *injectionDetector) segments(text []byte, from int, segs []segment, v *view) (_ []segment, ok bool) {
	return d.scan(text, from, segs, v, true)
}

// scan is segments, by blocks or (blocks false, for tests) byte by byte
// all the way.
func (d *injectionDetector) scan(text []byte, from int, segs []segment, v *view, blocks bool) (_ []segment, ok bool) {
	p := d.pre
	n := len(text)
	v.spent = 0
	sc := scanner{d: d, text: text, v: v, segs: segs, cur: segment{-1, -1},
		z: zoneEnds{text: text, zone: p.zone, lp: from, rp: from, end: from}}
	i := from
	for i > 0 && text[i-1] >= 0x80 && from-i < maxCutBack {
		i-- // a non-ASCII run in the context may glue a word at from
	}
	if i == from && i > 0 && i < n && isAlnum(text[i-1]) {
		// A word running into from started in the context.
		for i < n && isAlnum(text[i]) {
			i++
		}
	}
	ok = true
	if blocks {
		i, ok = sc.scanBlocks(i)
	}
	if !ok || !sc.scanTail(i) {
		return sc.segs, false
	}
	if sc.cur.s >= 0 {
		sc.segs = append(sc.segs, sc.cur)
		sc.covered += sc.cur.e - sc.cur.s
	}
	return sc.segs, sc.covered <= n/2
}

// scanBlocks scans text from i (not inside a word) sixty-four bytes at a
// time while there are more than seventy-two (see quiet), and returns
// where it stopped (not inside a word) and false when the segments grow
// too large.
func (sc *scanner) scanBlocks(i int) (int, bool) {
	text, p, d, v := sc.text, sc.d.pre, sc.d, sc.v
	var carry uint64 // 1 when text[i-1] is inside a word
	var bm blockMasks
	for {
		var m, a uint64
		i, m, a = p.quiet(text, i, carry, &bm)
		if m == 0 {
			carry = a
			break
		}
		next := i + 64
	events:
		for m != 0 {
			c := i + bits.TrailingZeros64(m)
			switch {
			case text[c] >= 0x80:
				j := sc.high(c)
				if j > next {
					next = j
					if sc.over() {
						return i, false
					}
					break events
				}
				m &^= 1<<(j-i) - 1
			case isAlnum(text[c]):
				m &= m - 1
				sc.word(c, alnumEnd(text, c+1))
			default: // a marker byte
				m &= m - 1
				if d.startsAt(text, c, v) {
					sc.add(c, c)
				}
			}
			if sc.over() {
				return i, false
			}
		}
		if next > i+64 {
			carry = 0 // after a non-ASCII run
		} else {
			carry = a >> 63
		}
		i = next
	}
	if carry != 0 {
		for i < len(text) && isAlnum(text[i]) {
			i++ // the rest of a word judged in its block
		}
	}
	return i, true
}

// pack gathers the high bits of the eight bytes of m (which has no other
// bits set) into the low eight bits, byte k's to bit k.
func pack(m uint64) uint64 { return m * 0x0002040810204081 >> 56 }

// lenMask[n] has the low n bytes set, for n from 1 to 8.
var lenMask = [16]uint64{1: 0xff, 2: 0xffff, 3: 0xffffff, 4: 0xffffffff, 5: 0xffffffffff,
	6: 0xffffffffffff, 7: 0xffffffffffffff, 8: ^uint64(0)}

// quiet passes over the blocks of sixty-four bytes from i (with more than
// seventy-two left) that hold nothing to judge, and returns the first that
// does: its start, a bit for each byte to judge (m, bit k for byte i+k)
// and for each of its letters and digits (a); m is 0 when too few bytes
// are left, and then a is the carry. carry is 1 when text[i-1] is inside
// a word.
//
// A block of sixty-four rather than eight bytes leaves the loop over its
// words once per sixty-four bytes: that branch is the one the processor
// cannot guess. A leaf function, so that its state stays in registers.
func (p *prefilter) quiet(text []byte, i int, carry uint64, bm *blockMasks) (int, uint64, uint64) {
	const letterBits = 0x4040404040404040 // letters have bit 0x40, digits not
	for ; i+72 <= len(text); i += 64 {
		blk := (*[72]byte)(text[i : i+72])
		var a, m, ax uint64
		if vector && (i >= bm.base && i+72 <= bm.end || bm.fill(p, text, i)) {
			// The masks at i, off two of blockmask's each, and ax.
			o := uint(i - bm.base)
			q, r := o/64&31, o%64
			a = bm.a[q]>>r | bm.a[q+1]<<(64-r)
			m = bm.m[q]>>r | bm.m[q+1]<<(64-r)
			q = (o + 64) / 64 & 31
			ax = (bm.a[q]>>r | bm.a[q+1]<<(64-r)) & 0xff
		} else {
			for j := 0; j < 64; j += 8 {
				x := binary.LittleEndian.Uint64(blk[j : j+8])
				a |= pack(alnumMask(x)) << j
				m |= pack(x&hi|p.markerMask(x)) << j
			}
			ax = pack(alnumMask(binary.LittleEndian.Uint64(blk[64:72]))) // for lengths past the block
		}
		starts := a &^ (a<<1 | carry)
		for s := starts; s != 0; s &= s - 1 {
			k := uint(bits.TrailingZeros64(s)) & 63
			// The word's length, up to eight: a shift by k and one by
			// 64-k (in two steps: k may be 0).
			n := bits.TrailingZeros64(^(a>>k | ax<<(^k&63)<<1) | 0x100)
			lm := lenMask[n&15]
			w := binary.LittleEndian.Uint64(blk[k:k+8]) & lm
			h := keyBit(w | 0x2020202020202020&lm)
			letters, digits := w&letterBits, ^w&letterBits&lm
			mixed := (letters | -letters) & (digits | -digits) >> 63
			m |= (p.keys[h/64]>>(h%64)&1 | mixed) << k
		}
		if m != 0 {
			return i, m, a
		}
		carry = a >> 63
	}
	return i, 0, carry
}

// vector is whether quiet reads its masks off blockmask's vector scan
// rather than eight bytes at a time (tests turn it off).
var vector = blockmask.Vector()

// blockMasks holds what quiet needs of blockmask's scan of up to 32
// blocks of text from base: a marks the letters and digits, m the
// non-ASCII and marker bytes (as quiet's masks of the same names). The
// masks at any i in [base, end-72] come off two of them.
type blockMasks struct {
	base, end int
	a, m      [33]uint64 // [n], past the last block scanned, is 0
}

// fill scans from i and reports whether the masks cover text[i:i+72].
func (bm *blockMasks) fill(p *prefilter, text []byte, i int) bool {
	n := p.masks.Scan(text[i:], bm.a[:32], bm.m[:32])
	bm.a[n], bm.m[n] = 0, 0
	bm.base, bm.end = i, i+64*n
	return i+72 <= bm.end
}

// scanTail is the scan byte by byte, from i (not inside a word) to the
// end of the text. It returns false when the segments grow too large.
func (sc *scanner) scanTail(i int) bool {
	text, p := sc.text, sc.d.pre
	n := len(text)
	for i < n {
		switch p.kind[text[i]] {
		case bOther:
			i++
			continue // nothing changed: no need for the check below
		case bAlnum:
			// alnumEnd, its first eight bytes here: most words end in
			// them.
			var j int
			if i+9 <= n {
				if m := ^alnumMask(binary.LittleEndian.Uint64(text[i+1:])) & hi; m != 0 {
					j = i + 1 + bits.TrailingZeros64(m)/8
				} else {
					j = alnumEnd(text, i+9)
				}
			} else {
				j = alnumEnd(text, i+1)
			}
			if !p.mayBeFirst(text, i, j) {
				i = j
				continue
			}
			sc.word(i, j)
			i = j
		case bMarker:
			if sc.d.startsAt(text, i, sc.v) {
				sc.add(i, i)
			}
			i++
		case bHigh:
			i = sc.high(i)
		}
		if sc.over() {
			return false
		}
	}
	return true
}
