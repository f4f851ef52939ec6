// Package norm builds the normalized view of a text that Warden's phrase
// detectors match against, and holds the detectors that look at the Unicode
// tricks the view undoes: hidden characters (tag characters, zero-width and
// bidi controls, variation-selector smuggling) and confusable spellings
// (mixed-script words, fullwidth or mathematical letters).
//
// The view is built rune by rune and keeps, for every byte it produces, the
// offset of the original rune that produced it, so a phrase found in the
// view is reported on the original bytes.
package norm

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/warden-llm/warden/safety/detect"
)

// MaxIgnorableRun is how many consecutive invisible characters the view
// drops inside a word; a longer run reads as a space. Bounding the run keeps
// the view of a text local (a rune's normalized form never depends on text
// more than a few dozen bytes away), which streaming detectors need: a
// word boundary is decided within detect.Context bytes. Such long runs are
// themselves reported by the hidden_unicode detector.
const MaxIgnorableRun = 8

// Normalize writes the normalized view of text to dst[:0] and, for each
// byte of the view, the offset in text of the rune that produced it to
// offs[:0], and returns both (grown as needed; pass the previous results
// back in to reuse their memory). Texts must be shorter than 2 GiB.
//
// The view, per rune:
//   - invisible characters are dropped: zero-width characters (U+200B–U+200F,
//     U+2060–U+2064, U+FEFF, U+00AD soft hyphen, U+180E), bidi controls
//     (U+202A–U+202E, U+2066–U+2069), variation selectors (U+FE00–U+FE0F,
//     U+E0100–U+E01EF), the language and cancel tags U+E0001 and U+E007F and
//     combining diacritics U+0300–U+036F (so "é" reads as "e"); a run of more
//     than MaxIgnorableRun of them reads as a space;
//   - tag characters U+E0020–U+E007E read as their ASCII counterparts, so
//     text smuggled in tags is scanned like any other;
//   - each rune is replaced by its compatibility decomposition (NFKD, one
//     rune at a time rather than full NFKC: fullwidth and mathematical
//     letters, ligatures and circled digits become ASCII, which is what
//     phrase matching needs; Hangul syllables are left whole);
//   - letters are lower-cased;
//   - Cyrillic and Greek look-alikes of Latin letters (а е о р с у х і ј ѕ
//     ԁ ԛ ԝ к һ ӏ, ο α ε ι κ ν ρ τ υ χ) become Latin, but only in a word
//     that also has Latin letters or is made of look-alikes alone, so real
//     Russian or Greek words stay as they are;
//   - the leet digits 0 1 3 4 5 7 become o l e a s t when an ASCII letter
//     is right before or after them ("1gn0re", "r3veal"), never in plain
//     numbers;
//   - every run of white space (and invalid UTF-8 and ASCII control bytes)
//     becomes one space, and a run of one ASCII punctuation character is cut
//     to three ("ignore----previous" reads as "ignore---previous").
func Normalize(dst []byte, offs []int32, text []byte) ([]byte, []int32) {
	n := normalizer{dst: dst[:0], offs: offs[:0], text: text}
	n.run()
	return n.dst, n.offs
}

// End maps the end e of a span [s, e) of the view (e > 0) back to text:
// the end of the original rune that produced byte e-1, see RuneEnd.
func End(text []byte, offs []int32, e int) int {
	o := int(offs[e-1])
	_, n := utf8.DecodeRune(text[o:])
	return RuneEnd(text, o+n)
}

// RuneEnd moves the end of a match over the stray UTF-8 continuation bytes
// that follow it, so that the match ends where a rune may start.
func RuneEnd(text []byte, end int) int {
	for end < len(text) && !utf8.RuneStart(text[end]) {
		end++
	}
	return end
}

// Pending returns how many bytes at the end of text may still change
// meaning when more text arrives: an unfinished UTF-8 sequence, stray
// continuation bytes that would extend a match ending before them (see
// RuneEnd), or a final leet digit that a letter after it would make a
// letter ("n0" + "w"). Streaming detectors hold them back and judge the
// rest.
func Pending(text []byte) int {
	p := len(text)
	for p > 0 && !utf8.RuneStart(text[p-1]) {
		p--
	}
	if p == 0 {
		return len(text)
	}
	p--
	if !utf8.FullRune(text[p:]) {
		return len(text) - p
	}
	_, n := utf8.DecodeRune(text[p:])
	if k := len(text) - p - n; k > 0 {
		return k
	}
	if c := text[p]; c >= '0' && c <= '9' && leet[c-'0'] != 0 {
		return 1
	}
	return 0
}

type normalizer struct {
	text []byte
	dst  []byte
	offs []int32

	last     byte // last byte written, 0 at the start
	punctRun int  // length of the current run of last (punctuation)
	ign      int  // length of the current run of dropped characters

	foldEnd int  // the fold decision holds for runes before foldEnd
	fold    bool // fold look-alikes in the current word
	tags    bool // the literal view reads tag characters as ASCII

	sparse bool             // literal view: record offsets as segs, not offs
	noKept bool             // literal view: no fast path by fastRunes (tests)
	segs   []Seg            // see OffsetMap
	sp     *detect.Specials // literal view: the text's special bytes, when scanned
	stop   [4]int           // literal view: where the next special and escape bytes are (see nextSpecial)
	fastR  *fastRunes       // literal view: fast(), once per text
}

// ASCII byte kinds.
const (
	kLetter = iota
	kDigit
	kSpace
	kPunct
)

var asciiKind [128]uint8

func init() {
	for c := range 128 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			asciiKind[c] = kLetter
		case c >= '0' && c <= '9':
			asciiKind[c] = kDigit
		case c <= ' ' || c == 0x7f:
			asciiKind[c] = kSpace
		default:
			asciiKind[c] = kPunct
		}
	}
}

// leet maps the digits the view reads as letters next to letters.
var leet = [10]byte{'o', 'l', 0, 'e', 'a', 's', 0, 't', 0, 0}

func (n *normalizer) run() {
	text := n.text
	if cap(n.dst) < len(text) {
		n.dst = make([]byte, 0, len(text)+len(text)/8)
		n.offs = make([]int32, 0, len(text)+len(text)/8)
	}
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i = n.fast(i)
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		n.rune(r, size, i)
		i += size
	}
}

// fast normalizes the run of ASCII at i, the bulk of most text, in one
// tight loop (the same rules as ascii), and returns where it stops.
func (n *normalizer) fast(i int) int {
	text := n.text
	w := len(n.dst)
	if need := w + len(text) - i; cap(n.dst) < need || cap(n.offs) < need {
		n.dst = append(n.dst[:w], make([]byte, need-w)...)[:w]
		n.offs = append(n.offs[:w], make([]int32, need-w)...)[:w]
	}
	d, o := n.dst[:cap(n.dst)], n.offs[:cap(n.offs)]
	last, run := n.last, n.punctRun
	j := i
	for ; j < len(text) && w < len(d) && w < len(o); j++ {
		c := text[j]
		if c >= utf8.RuneSelf {
			break
		}
		switch asciiKind[c] {
		case kLetter:
			c |= 0x20
		case kDigit:
			if l := leet[c-'0']; l != 0 && (isASCIILetter(last) || j+1 < len(text) && isASCIILetter(text[j+1])) {
				c = l
			}
		case kSpace:
			if last == ' ' {
				continue
			}
			c = ' '
		default:
			if c == last {
				if run >= 3 {
					continue
				}
				run++
			} else {
				run = 1
			}
		}
		d[w], o[w] = c, int32(j)
		w++
		last = c
	}
	n.dst, n.offs = d[:w], o[:w]
	n.last, n.punctRun = last, run
	n.ign = 0
	return j
}

// ascii handles one ASCII character c that came from the rune at off; next
// is the offset of the rune after it, for the leet lookahead.
func (n *normalizer) ascii(c byte, off, next int) {
	switch asciiKind[c] {
	case kLetter:
		n.put(c|0x20, off)
	case kDigit:
		if l := leet[c-'0']; l != 0 && (isASCIILetter(n.last) || next < len(n.text) && isASCIILetter(n.text[next])) {
			c = l
		}
		n.put(c, off)
	case kSpace:
		n.space(off)
	default:
		if c == n.last {
			if n.punctRun >= 3 {
				return
			}
			n.punctRun++
		} else {
			n.punctRun = 1
		}
		n.put(c, off)
		n.last = c
		return
	}
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func (n *normalizer) put(c byte, off int) {
	n.dst = append(n.dst, c)
	n.mark(off)
	n.last = c
}

// mark records that the last byte of the view comes from the rune at off.
func (n *normalizer) mark(off int) {
	if !n.sparse {
		n.offs = append(n.offs, int32(off))
		return
	}
	k := len(n.dst) - 1
	if l := len(n.segs); l > 0 && int(n.segs[l-1].O)+k-int(n.segs[l-1].V) == off {
		return
	}
	n.segs = append(n.segs, Seg{V: int32(k), O: int32(off)})
}

func (n *normalizer) space(off int) {
	if n.last != ' ' {
		n.put(' ', off)
	}
}

// rune handles the non-ASCII (or invalid) rune r of size bytes at off.
func (n *normalizer) rune(r rune, size, off int) {
	if r == utf8.RuneError && size == 1 {
		n.ign = 0
		n.space(off)
		return
	}
	if Ignorable(r) || r >= 0x300 && r <= 0x36f {
		n.ign++
		if n.ign == MaxIgnorableRun+1 {
			n.space(off)
		}
		return
	}
	n.ign = 0
	if r >= 0xe0020 && r <= 0xe007e {
		n.ascii(byte(r-0xe0000), off, off+size)
		return
	}
	if unicode.IsSpace(r) {
		n.space(off)
		return
	}
	if r < 0xac00 || r > 0xd7a3 {
		if d := norm.NFKD.Properties(n.text[off:]).Decomposition(); len(d) > 0 {
			for len(d) > 0 {
				dr, ds := utf8.DecodeRune(d)
				d = d[ds:]
				switch {
				case dr >= 0x300 && dr <= 0x36f:
				case dr < utf8.RuneSelf:
					n.ascii(byte(dr), off, off+size)
				case unicode.IsSpace(dr):
					n.space(off)
				default:
					n.other(dr, off)
				}
			}
			return
		}
	}
	n.other(r, off)
}

// other writes a non-ASCII rune that needs no decomposition.
func (n *normalizer) other(r rune, off int) {
	r = unicode.ToLower(r)
	if l := lookalike(r); l != 0 {
		if off >= n.foldEnd {
			n.fold, n.foldEnd = foldWord(n.text, off)
		}
		if n.fold {
			n.put(l, off)
			return
		}
	}
	var buf [utf8.UTFMax]byte
	k := utf8.EncodeRune(buf[:], r)
	for _, b := range buf[:k] {
		n.dst = append(n.dst, b)
		n.offs = append(n.offs, int32(off))
	}
	n.last = buf[k-1]
}

// Ignorable reports whether the view drops r: zero-width characters, bidi
// controls, variation selectors and the language and cancel tags.
func Ignorable(r rune) bool {
	switch {
	case r < 0xad:
		return false
	case r == 0xad, r == 0x180e, r == 0xfeff:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e,
		r >= 0x2060 && r <= 0x2064, r >= 0x2066 && r <= 0x2069:
		return true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef:
		return true
	case r == 0xe0001, r == 0xe007f:
		return true
	}
	return false
}

// lookalike returns the Latin letter a lower-case Cyrillic or Greek letter
// is mistaken for, or 0.
func lookalike(r rune) byte {
	if r < 0x3b1 || r > 0x529 {
		return 0
	}
	switch r {
	case 'а':
		return 'a'
	case 'е':
		return 'e'
	case 'о':
		return 'o'
	case 'р':
		return 'p'
	case 'с':
		return 'c'
	case 'у':
		return 'y'
	case 'х':
		return 'x'
	case 'і':
		return 'i'
	case 'ј':
		return 'j'
	case 'ѕ':
		return 's'
	case 'ԁ':
		return 'd'
	case 'ԛ':
		return 'q'
	case 'ԝ':
		return 'w'
	case 'к':
		return 'k'
	case 'һ':
		return 'h'
	case 'ӏ':
		return 'l'
	case 'ο':
		return 'o'
	case 'α':
		return 'a'
	case 'ε':
		return 'e'
	case 'ι':
		return 'i'
	case 'κ':
		return 'k'
	case 'ν':
		return 'v'
	case 'ρ':
		return 'p'
	case 'τ':
		return 't'
	case 'υ':
		return 'u'
	case 'χ':
		return 'x'
	}
	return 0
}

// Letter classes of a word, for the look-alike rules.
const (
	wLatin     = 1 << iota // a Latin letter (ASCII, accented, fullwidth, mathematical)
	wLookalike             // a Cyrillic or Greek look-alike of a Latin letter
	wCyrGreek              // any other Cyrillic or Greek letter
	wOther                 // a letter of another script
	wWide                  // a fullwidth or mathematical Latin letter
	wWideLower             // ... lower-case
)

// classify returns the word class bits of r and whether r belongs to a word
// at all (letters, marks, digits and the invisible characters the view
// drops). Runes below classLimit are looked up in a table built from
// classifySlow; the Unicode tables it consults cost far more.
func classify(r rune) (uint8, bool) {
	if r >= 0 && r < classLimit {
		c := classTable[r]
		return c &^ classOK, c&classOK != 0
	}
	return classifySlow(r)
}

// classLimit covers Latin, Greek, Cyrillic and the other alphabets up to
// U+2FFF; classOK marks a table entry whose rune belongs to a word.
const (
	classLimit = 0x3000
	classOK    = 0x80
)

// classTable is filled by init, after asciiKind, which classifySlow reads.
var classTable [classLimit]uint8

func init() {
	for r := range rune(classLimit) {
		c, ok := classifySlow(r)
		if ok {
			c |= classOK
		}
		classTable[r] = c
	}
}

func classifySlow(r rune) (uint8, bool) {
	if r < utf8.RuneSelf {
		switch asciiKind[r] {
		case kLetter:
			return wLatin, true
		case kDigit:
			return 0, true
		}
		return 0, r == '\''
	}
	if Ignorable(r) || r >= 0xe0020 && r <= 0xe007e {
		if r >= 0xe0041 && r <= 0xe007a {
			return wLatin, true
		}
		return 0, true
	}
	switch {
	case r >= 0xff21 && r <= 0xff3a:
		return wLatin | wWide, true
	case r >= 0xff41 && r <= 0xff5a:
		return wLatin | wWide | wWideLower, true
	case r >= 0x1d400 && r <= 0x1d6a5:
		// Mathematical Alphanumeric Symbols: the Latin alphabets repeat
		// every 52 letters, upper case first.
		if (r-0x1d400)%52 >= 26 {
			return wLatin | wWide | wWideLower, true
		}
		return wLatin | wWide, true
	case r >= 0x1d7ce && r <= 0x1d7ff:
		return 0, true // mathematical digits
	}
	if !unicode.IsLetter(r) {
		return 0, unicode.IsMark(r) || unicode.IsDigit(r)
	}
	lr := unicode.ToLower(r)
	switch {
	case lookalike(lr) != 0:
		return wLookalike, true
	case unicode.Is(unicode.Cyrillic, r) || unicode.Is(unicode.Greek, r):
		return wCyrGreek, true
	case unicode.Is(unicode.Latin, r):
		return wLatin, true
	}
	return wOther, true
}

// word returns the bounds [start, end) of the word around the rune at off
// and its class bits; the word does not reach past text.
func word(text []byte, off int) (start, end int, class uint8) {
	start = off
	for start > 0 {
		r, n := utf8.DecodeLastRune(text[:start])
		c, ok := classify(r)
		if !ok || r == utf8.RuneError && n == 1 {
			break
		}
		class |= c
		start -= n
	}
	end = off
	for end < len(text) {
		r, n := utf8.DecodeRune(text[end:])
		c, ok := classify(r)
		if !ok || r == utf8.RuneError && n == 1 {
			break
		}
		class |= c
		end += n
	}
	return start, end, class
}

// foldWord decides whether look-alikes in the word around off read as
// Latin, and returns where that decision stops holding.
func foldWord(text []byte, off int) (bool, int) {
	_, end, class := word(text, off)
	fold := class&wLatin != 0 || class&(wCyrGreek|wOther) == 0
	return fold, end
}
