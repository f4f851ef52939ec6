package phrase

import (
	"encoding/binary"
	"math/bits"

	"github.com/warden-llm/warden/safety/detect/blockmask"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// Most text holds no injection phrase, and normalizing all of it only to
// find that out is what used to make the injection detector the slowest of
// the set. Find therefore first looks for the places where a phrase may
// start, on the raw bytes, and builds the normalized view only for
// segments around them. The result is the same as that of a scan of the
// whole view (findWhole; TestSegmentsEqualWhole and FuzzSegments check it)
// because:
//
//   - Every match starts with a start token (a verb, intro, leak word,
//     fixed phrase or marker). A start token that needs a word boundary on
//     its left begins a word of the view, and that word is exactly the
//     token's first word (the token either goes on with a non-word byte
//     or needs a boundary on its right). In pure ASCII the view's words
//     are the raw words, lower-cased and with leet digits read as letters,
//     so a raw word that is not a first word (prefilter.firstWords) starts
//     nothing. A start token without a left boundary starts with a marker
//     byte (bMarker) or is CJK. The scan finds the words worth asking
//     about, the markers and the non-ASCII sixty-four bytes at a time
//     (see scan.go).
//   - A word or marker that passes that filter is confirmed by running the
//     automaton from it over the view, read straight off the raw bytes
//     (startsAt, asciiReader) or from a small view.
//   - A run of non-ASCII may spell anything (invisible, fullwidth, tag and
//     look-alike characters) unless it is inert (see inertRunes,
//     inertWord); a live run is judged, with the words glued to it, from
//     a small view (runStarts).
//   - The grammar reads at most zone bytes of the view after a start
//     token: the token, a gap of maxGap, the next token (which settles the
//     phrase, matched or not) and postQual's look past it. A segment covers
//     that much from each candidate it holds (counted low on the raw
//     bytes, see viewBytes) and ends before an ASCII byte that is not a
//     letter or digit, so the word it ends in is whole.
//   - A segment starts at a cut (see cut), where normalizing from scratch
//     gives the same view as normalizing the whole text. Tokens of the
//     whole view outside every segment never start a phrase and are too
//     far from any start token to settle one, so dropping them changes
//     nothing.
//
// Where it cannot tell, the prefilter takes a candidate; when the segments
// cover more than half the text, Find scans the whole view instead.

// segment is a range [s, e) of the window to be normalized and scanned.
type segment struct{ s, e int }

// Byte kinds for the candidate scan.
const (
	bOther  = iota // ASCII that starts nothing
	bAlnum         // ASCII letter or digit
	bMarker        // first byte of a start token that needs no left boundary
	bHigh          // non-ASCII
)

// maxCutBack bounds how far back from a candidate a cut is looked for.
const maxCutBack = 64

type prefilter struct {
	kind [256]uint8
	// lower maps a raw byte to the letter the view may read it as (leet
	// digits included), 0 for anything that cannot be in a first word.
	lower [256]byte
	// seen has the bit wordBit(hash) of each first word's hash (see
	// wordHash) set: most words miss it, and only those that hit it
	// are looked up in firstWords.
	seen       [1 << 10]uint64
	firstWords map[string]bool
	// keys has the bit keyBit of each first word's key (see wordKey)
	// set, and maxWord is the longest first word: the scan's filter.
	keys    [1 << 10]uint64
	maxWord int
	// short holds the keys of the first words of eight letters or fewer.
	short map[uint64]bool
	// markers are the marker bytes, each repeated over eight bytes
	// (the first repeated when there are fewer than three).
	markers [3]uint64
	zone    int // bytes of the view the grammar reads after a start token
	// masks is the vector scan's table of quiet's masks: letters and
	// digits, and non-ASCII and marker bytes.
	masks *blockmask.Table
}

func isStart(class int) bool {
	return class&(tVerb|tIntro|tLeak|tLeakQ|tPhrase|tMarker) != 0
}

func newPrefilter(d *injectionDetector, pats [][]byte) *prefilter {
	p := &prefilter{firstWords: map[string]bool{}, short: map[uint64]bool{}, zone: 2*d.maxLen + maxGap + 8}
	for c := range 256 {
		switch {
		case c >= 0x80:
			p.kind[c] = bHigh
		case c >= '0' && c <= '9':
			p.kind[c] = bAlnum
			if l := leetOf(byte(c)); l != 0 {
				p.lower[c] = l
			}
		case c|0x20 >= 'a' && c|0x20 <= 'z':
			p.kind[c] = bAlnum
			p.lower[c] = byte(c) | 0x20
		}
	}
	nm := 0
	for i, t := range d.toks {
		if !isStart(t.class) {
			continue
		}
		pat := pats[i]
		if pat[0] >= '0' && pat[0] <= '9' {
			panic("phrase: a start token begins with a digit") // see quiet
		}
		if !t.left {
			switch {
			case pat[0] >= 0x80:
			case p.kind[pat[0]] == bAlnum:
				panic("phrase: a start token without a left boundary begins with a letter")
			case p.kind[pat[0]] != bMarker:
				p.kind[pat[0]] = bMarker
				if nm == len(p.markers) {
					panic("phrase: more marker bytes than the scan tests")
				}
				p.markers[nm] = uint64(pat[0]) * b01
				nm++
			}
			continue
		}
		w := pat
		for k, c := range pat {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				w = pat[:k]
				break
			}
		}
		p.firstWords[string(w)] = true
		b := wordBit(wordHash(w, &p.lower))
		p.seen[b/64] |= 1 << (b % 64)
		p.maxWord = max(p.maxWord, len(w))
		var key [8]byte
		copy(key[:], w)
		if len(w) <= 8 {
			p.short[binary.LittleEndian.Uint64(key[:])] = true
		}
		k := keyBit(binary.LittleEndian.Uint64(key[:]))
		p.keys[k/64] |= 1 << (k % 64)
	}
	if nm == 0 {
		panic("phrase: no marker bytes") // the padding below would test for NUL
	}
	for k := nm; k < len(p.markers); k++ {
		p.markers[k] = p.markers[0]
	}
	p.masks = blockmask.MustNew(isAlnum, func(c byte) bool { return p.kind[c] == bHigh || p.kind[c] == bMarker })
	return p
}

// leetOf is the letter the view reads a leet digit as, or 0.
func leetOf(c byte) byte {
	v, _ := norm.Normalize(nil, nil, []byte{'x', c})
	if len(v) == 2 && v[1] != c {
		return v[1]
	}
	return 0
}

// wordHash hashes a word's length and its first three and last letters
// as the view reads them: enough to tell most words apart, in constant
// time.
func wordHash(w []byte, lower *[256]byte) uint32 {
	n := len(w)
	return uint32(n)<<24 ^ uint32(lower[w[0]])<<16 ^ uint32(lower[w[min(1, n-1)]])<<8 ^
		uint32(lower[w[min(2, n-1)]])*31 ^ uint32(lower[w[n-1]])
}

// wordBit maps a word's hash to a bit of prefilter.seen.
func wordBit(h uint32) uint32 { return (h * 0x9e3779b1) >> 16 }

// firstWord reports whether the pure ASCII word w may read as a first
// word in the view.
func (p *prefilter) firstWord(w []byte) bool {
	if b := wordBit(wordHash(w, &p.lower)); p.seen[b/64]&(1<<(b%64)) == 0 || len(w) > 32 {
		return false
	}
	var buf [32]byte
	for i, c := range w {
		if buf[i] = p.lower[c]; buf[i] == 0 {
			return false
		}
	}
	return p.firstWords[string(buf[:len(w)])]
}

// alnumEnd returns the end of the run of ASCII letters and digits at i,
// eight bytes at a time.
func alnumEnd(text []byte, i int) int {
	for ; i+8 <= len(text); i += 8 {
		if m := ^alnumMask(binary.LittleEndian.Uint64(text[i:])) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(text) && isAlnum(text[i]) {
		i++
	}
	return i
}

const (
	lo7 = 0x7f7f7f7f7f7f7f7f
	hi  = 0x8080808080808080
	b01 = 0x0101010101010101
)

// alnumMask has the high bit of each byte of x that is an ASCII letter or
// digit. No byte's sum carries into the next.
func alnumMask(x uint64) uint64 {
	y := (x | 0x2020202020202020) & lo7 // fold case
	letters := (y + (0x80-'a')*b01) &^ (y + (0x80-'z'-1)*b01)
	t := x ^ 0x3030303030303030 // digits become 0..9
	digits := ^((t & lo7) + (0x80-10)*b01 | t)
	return (letters&^x | digits) & hi
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z'
}

func isSpace(c byte) bool { return c <= ' ' || c == 0x7f }

// cut reports whether the view of text[p:] built from scratch is the view
// of text read from p on: p starts a new word (the view's state carries
// nothing from before p: no open word for the look-alike rule or a leet
// digit, no run of spaces or punctuation to collapse), and text[p] is
// ASCII, so no rune or run of invisible characters crosses p.
func cut(text []byte, p int) bool {
	if p == 0 {
		return true
	}
	a, b := text[p-1], text[p]
	switch {
	case a >= 0x80 || b >= 0x80 || a == '\'' || b == '\'' || isSpace(b):
		return false
	case isAlnum(b):
		return !isAlnum(a)
	}
	return a != b // punctuation: not inside a run of it
}

// cutBefore returns the nearest cut in [lo, i], or -1 when there is none.
func cutBefore(text []byte, i, lo int) int {
	for p := i; p >= lo; p-- {
		if cut(text, p) {
			return p
		}
	}
	return -1
}

// ends reports whether a segment may end at e: the view's word there is
// whole and no rune or leet lookahead crosses e.
func ends(text []byte, e int) bool {
	return e == len(text) || text[e] < 0x80 && !isAlnum(text[e])
}

// viewBytes is how many bytes of view text[i] gives at least: an ASCII
// letter or digit one, a space or punctuation byte one unless it may be
// collapsed into the byte before, a non-ASCII byte none.
func viewBytes(text []byte, i int) int {
	c := text[i]
	switch {
	case c >= 0x80:
		return 0
	case isAlnum(c):
		return 1
	case i > 0 && text[i-1] < 0x80 && text[i-1] != c && !(isSpace(c) && isSpace(text[i-1])):
		return 1
	}
	return 0
}

// viewEnd returns the first end (see ends) after which text[i:] has given
// at least n bytes of view, or -1 if that takes more than limit bytes.
func viewEnd(text []byte, i, n, limit int) int {
	lim := min(len(text), i+limit)
	for k := 0; i < lim && k < n; i++ {
		k += viewBytes(text, i)
	}
	for i < lim && !ends(text, i) {
		i++
	}
	if !ends(text, i) {
		return -1
	}
	return i
}

// zoneEnds finds, for candidates in increasing order, the end of the zone
// the grammar may read after each: the first end after which the text has
// given zone bytes of view. Its cursors only move forward, so a run of
// candidates costs time linear in the text.
type zoneEnds struct {
	text   []byte
	zone   int
	lp, lk int // lk view bytes (at least) in text[x:lp], for some x
	rp, rk int // the same for text[x:rp]
	end    int // the first end at or after some earlier rp
}

func (z *zoneEnds) after(c int) int {
	if c >= z.rp {
		// Past everything counted so far: count afresh from c.
		z.lp, z.lk, z.rp, z.rk = c, 0, c, 0
	}
	for ; z.lp < c; z.lp++ {
		z.lk += viewBytes(z.text, z.lp)
	}
	if z.rp < z.lp {
		z.rp, z.rk = z.lp, z.lk
	}
	for ; z.rp < len(z.text) && z.rk < z.lk+z.zone; z.rp++ {
		z.rk += viewBytes(z.text, z.rp)
	}
	if z.end < z.rp {
		z.end = z.rp
		for !ends(z.text, z.end) {
			z.end++
		}
	}
	return z.end
}
