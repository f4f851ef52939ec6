package norm

import (
	"bytes"
	"sort"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/warden-llm/warden/safety/detect"
)

// Literal writes the literal view of text to dst[:0] and, for each byte of
// the view, the offset in text of the rune that produced it to offs[:0],
// like Normalize. It is the view every detector but the ones that judge
// the raw bytes (hidden_unicode, confusable, control) reads through the
// filter: the text as the model reads it, with case, digits, punctuation
// and white space kept, so that an address or a key split by invisible
// characters, spelled in fullwidth or look-alike letters or in another
// script's digits reads as the plain value. Per rune:
//   - printable ASCII, tab and the line breaks are kept as they are;
//   - the characters Normalize drops (see Ignorable, and combining marks)
//     are dropped, and so are C0 controls, DEL and C1 controls (so
//     "ign\x00ore" reads "ignore"); a run of more than MaxIgnorableRun of
//     them reads as a space;
//   - tag characters read as their ASCII counterparts when readTags is
//     set, and are dropped otherwise (the filter drops them when its
//     policy strips hidden_unicode: the reader then gets the text without
//     them, and a tag "space" must not split a value the stripping joins);
//   - white space and the Hangul and braille fillers (U+3164, U+115F,
//     U+1160, U+FFA0, U+2800) read as a space, an invalid UTF-8 byte that
//     may start a rune as a space (a stray continuation byte is dropped);
//   - decimal digits of any script read as ASCII digits, small capitals
//     (ᴀ ʙ ᴄ...) as lower-case ASCII letters;
//   - other runes are replaced by their compatibility decomposition (NFKD,
//     without the combining marks: fullwidth and mathematical letters and
//     digits become ASCII, keeping their case);
//   - Cyrillic and Greek look-alikes become Latin letters of the same case
//     by the word rule of Normalize;
//   - HTML character references and percent-encoded printable ASCII read
//     as the character they stand for, and attribute-less HTML tags
//     between two letters are dropped (see escape.go). A view byte read
//     from an escape maps to the escape's first byte; OffsetMap.End maps
//     a span's end past the whole escape.
//
// The view of a text is local: a byte of the view depends on the rune it
// comes from, the run of dropped characters it is in (at most
// MaxIgnorableRun runes back) and, for a look-alike, its word; see
// LiteralPending.
func Literal(dst []byte, offs []int32, text []byte, readTags bool) ([]byte, []int32) {
	n := normalizer{dst: dst[:0], offs: offs[:0], text: text, tags: readTags}
	n.literal()
	return n.dst, n.offs
}

// A Seg starts a stretch of the literal view whose bytes come from
// consecutive bytes of the text: view byte V+i comes from the rune at
// O+i.
type Seg struct{ V, O int32 }

// An OffsetMap is the offsets of a literal view, kept as segments: most
// text is plain, and its view maps back with one segment per stretch.
type OffsetMap []Seg

// At returns the offset in the text of the rune that produced view byte k.
func (m OffsetMap) At(k int) int {
	i := m.seg(k, 0, len(m))
	return int(m[i].O) + k - int(m[i].V)
}

// seg returns the last segment of m[lo:hi] that starts at or before view
// byte k; m[lo].V <= k.
func (m OffsetMap) seg(k, lo, hi int) int {
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if int(m[mid].V) <= k {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// A Cursor maps view offsets back to the text like the OffsetMap's At
// and End, fastest when each offset asked for is at or after the last:
// the matches of one detector, in order.
type Cursor struct {
	m OffsetMap
	i int // the segment of the last offset asked for
}

// Cursor returns a cursor over m.
func (m OffsetMap) Cursor() Cursor { return Cursor{m: m} }

// At is OffsetMap.At.
func (c *Cursor) At(k int) int {
	m, i := c.m, c.i
	if int(m[i].V) > k {
		i = m.seg(k, 0, i)
	} else {
		// Gallop forward to a segment past k, then search back.
		step, hi := 1, i+1
		for hi < len(m) && int(m[hi].V) <= k {
			i, hi = hi, hi+step
			step *= 2
		}
		i = m.seg(k, i, min(hi, len(m)))
	}
	c.i = i
	return int(m[i].O) + k - int(m[i].V)
}

// End is OffsetMap.End.
func (c *Cursor) End(text []byte, e int) int {
	o := c.At(e - 1)
	return RuneEnd(text, o+srcLen(text, o))
}

// Start returns the first view byte that comes from text at or after
// offset from (len(view) when none does).
func (m OffsetMap) Start(from, viewLen int) int {
	return sort.Search(viewLen, func(k int) bool { return m.At(k) >= from })
}

// End maps the end e of a span of the view (e > 0) back to text: the end
// of what produced byte e-1 (an escape or a rune), moved over stray
// continuation bytes (RuneEnd).
func (m OffsetMap) End(text []byte, e int) int {
	o := m.At(e - 1)
	return RuneEnd(text, o+srcLen(text, o))
}

// LiteralMap is Literal with the offsets kept as an OffsetMap (pass the
// previous results back in to reuse their memory): the same view, built
// without writing an offset per byte.
func LiteralMap(dst []byte, m OffsetMap, text []byte, readTags bool) ([]byte, OffsetMap) {
	n := normalizer{dst: dst[:0], segs: m[:0], text: text, tags: readTags, sparse: true}
	n.literal()
	return n.dst, n.segs
}

// LiteralMapScanned is LiteralMap for a text whose special bytes sp holds
// (see PlainScanned): the view copies what lies between them.
func LiteralMapScanned(dst []byte, m OffsetMap, text []byte, readTags bool, sp *detect.Specials) ([]byte, OffsetMap) {
	n := normalizer{dst: dst[:0], segs: m[:0], text: text, tags: readTags, sparse: true, sp: sp}
	n.literal()
	return n.dst, n.segs
}

// Plain reports whether text is its own literal view: printable ASCII,
// tabs and line breaks only, without escapes or in-word tags.
func Plain(text []byte) bool {
	return detect.NextSpecial(text, 0) == len(text) && !escapes(text)
}

// PlainScanned is Plain for a text whose special bytes sp holds: sp was
// built by detect.Specials.Scan over text, or over a longer text that
// begins with it.
func PlainScanned(text []byte, sp *detect.Specials) bool {
	return sp.Next(0) >= len(text) && !escapes(text)
}

// escapes reports whether text holds an escape or in-word tags.
func escapes(text []byte) bool {
	for _, c := range [...]byte{'&', '%', '<'} {
		for k := 0; k < len(text); k++ {
			j := bytes.IndexByte(text[k:], c)
			if j < 0 {
				break
			}
			if k += j; special(text, k) {
				return true
			}
		}
	}
	return false
}

func plainByte(c byte) bool {
	return c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r'
}

// LiteralPending returns how many bytes at the end of text may still read
// otherwise in the literal view once more text arrives: an unfinished
// UTF-8 sequence, an unfinished escape or in-word tags, a trailing run of dropped characters (how long it grows
// decides whether it reads as a space) and a trailing word holding a
// look-alike (a later letter of another script may unfold it).
func LiteralPending(text []byte) int {
	return max(literalPending(text), escapePending(text))
}

func literalPending(text []byte) int {
	p := len(text)
	for p > 0 && len(text)-p < utf8.UTFMax && !utf8.RuneStart(text[p-1]) {
		p--
	}
	if p > 0 && !utf8.FullRune(text[p-1:]) {
		p--
	} else {
		p = len(text)
	}
	j := p
	for j > 0 && p-j <= 4*(MaxIgnorableRun+1) {
		r, n := utf8.DecodeLastRune(text[:j])
		stray := r == utf8.RuneError && n == 1 && !utf8.RuneStart(text[j-1])
		if !literalDropped(r, n) && (r < 0xe0000 || r > 0xe007f) && !stray {
			break
		}
		j -= n
	}
	// The trailing word, if it has a look-alike.
	k, look := j, false
	for k > 0 && j-k <= maxWord {
		r, n := utf8.DecodeLastRune(text[:k])
		c, ok := classify(r)
		if !ok || r == utf8.RuneError && n == 1 {
			break
		}
		look = look || c&wLookalike != 0 || r >= 0x370 && r <= 0x52f
		k -= n
	}
	if look {
		j = k
	}
	return len(text) - j
}

func literalDropped(r rune, size int) bool {
	if r < utf8.RuneSelf {
		return !plainByte(byte(r)) && r != '\v' && r != '\f'
	}
	return size > 1 && (Ignorable(r) || r >= 0x300 && r <= 0x36f || r >= 0x80 && r <= 0x9f)
}

// nextSpecial returns the offset of the first byte of the text at or
// after pos that is special (see detect.Specials) or may start an escape
// (mayEscape), or len(n.text): the bytes before it are their own view.
// pos grows from one call to the next (and is never 0).
func (n *normalizer) nextSpecial(pos int) int {
	// The next special byte and the next '&', '%' and '<', each found
	// once: stop[0] is the next special byte at or after the last pos
	// asked for, stop[1:] the next escape bytes.
	if n.stop[0] < pos {
		if n.sp != nil {
			n.stop[0] = min(n.sp.Next(pos), len(n.text))
		} else {
			n.stop[0] = detect.NextSpecial(n.text, pos)
		}
	}
	j := n.stop[0]
	for k, c := range [...]byte{'&', '%', '<'} {
		if n.stop[k+1] < pos {
			if e := bytes.IndexByte(n.text[pos:], c); e >= 0 {
				n.stop[k+1] = pos + e
			} else {
				n.stop[k+1] = len(n.text)
			}
		}
		j = min(j, n.stop[k+1])
	}
	return j
}

func (n *normalizer) literal() {
	text := n.text
	if cap(n.dst) < len(text) {
		n.dst = make([]byte, 0, len(text)+len(text)/8)
		if !n.sparse {
			n.offs = make([]int32, 0, len(text)+len(text)/8)
		}
	}
	for i := 0; i < len(text); {
		c := text[i]
		if mayEscape[c] {
			if r, k := escapeAt(text, i); k > 0 {
				if r < utf8.RuneSelf && literalDropped(r, 1) {
					n.drop(i)
				} else if r < utf8.RuneSelf {
					n.ign = 0
					n.put(byte(r), i)
				} else {
					var b [utf8.UTFMax]byte
					n.literalRune(r, utf8.EncodeRune(b[:], r), i, b[:])
				}
				i += k
				continue
			}
			if k := tagsAt(text, i); k > 0 {
				i += k
				continue
			}
		}
		if plainByte(c) {
			// A run of plain ASCII, the bulk of most text, is copied
			// as it is.
			j := n.nextSpecial(i + 1)
			w := len(n.dst)
			n.dst = append(n.dst, text[i:j]...)
			if n.sparse {
				n.dst = n.dst[:w+1]
				n.mark(i)
				n.dst = n.dst[:w+j-i]
				n.ign = 0
				i = j
				continue
			}
			if need := w + j - i; cap(n.offs) >= need {
				n.offs = n.offs[:need]
			} else {
				n.offs = append(n.offs, make([]int32, j-i)...)
			}
			offs := n.offs[w:]
			for k := range offs {
				offs[k] = int32(i + k)
			}
			n.ign = 0
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			if literalDropped(rune(c), 1) {
				n.drop(i)
			} else {
				n.ign = 0
				n.put(c, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		n.literalRune(r, size, i, text[i:])
		i += size
	}
}

// drop skips a dropped character at off, or writes the space a long run of
// them reads as.
func (n *normalizer) drop(off int) {
	n.ign++
	if n.ign == MaxIgnorableRun+1 {
		n.put(' ', off)
	}
}

// literalRune reads the rune r of size bytes at off, src its encoding (the
// text at off, or the rune an escape there stands for).
func (n *normalizer) literalRune(r rune, size, off int, src []byte) {
	if r == utf8.RuneError && size == 1 {
		if !utf8.RuneStart(n.text[off]) {
			return // a stray continuation byte: dropped, and no rune starts here
		}
		n.ign = 0
		n.put(' ', off)
		return
	}
	if r < 0x10000 && !n.noKept {
		if n.fastR == nil {
			n.fastR = fast()
		}
		f := n.fastR
		if f.kept[r>>6]&(1<<(r&63)) != 0 {
			// The common case: a rune the view keeps as it is. Its
			// first byte may continue the last segment; every further
			// byte maps to the rune's start too, so it starts one.
			n.ign = 0
			n.dst = append(n.dst, src[0])
			n.mark(off)
			for _, b := range src[1:size] {
				n.dst = append(n.dst, b)
				if n.sparse {
					n.segs = append(n.segs, Seg{V: int32(len(n.dst) - 1), O: int32(off)})
				} else {
					n.offs = append(n.offs, int32(off))
				}
			}
			n.last = src[size-1]
			return
		}
		if r < 0x800 && f.look[r] != 0 {
			n.ign = 0
			n.lookalike(r, f.look[r]&0x7f, f.look[r]&0x80 != 0, off)
			return
		}
	}
	if literalDropped(r, size) {
		n.drop(off)
		return
	}
	n.ign = 0
	switch {
	case r >= 0xe0020 && r <= 0xe007e && n.tags:
		n.put(byte(r-0xe0000), off)
		return
	case r >= 0xe0000 && r <= 0xe007f:
		n.drop(off)
		return
	case filler(r), unicode.IsSpace(r):
		n.put(' ', off)
		return
	}
	if d := digitValue(r); d >= 0 {
		n.put(byte('0'+d), off)
		return
	}
	if c := smallCap(r); c != 0 {
		n.put(c, off)
		return
	}
	if r < 0xac00 || r > 0xd7a3 {
		if d := norm.NFKD.Properties(src).Decomposition(); len(d) > 0 {
			for len(d) > 0 {
				dr, ds := utf8.DecodeRune(d)
				d = d[ds:]
				switch {
				case dr >= 0x300 && dr <= 0x36f:
				case dr < utf8.RuneSelf:
					n.put(byte(dr), off)
				case unicode.IsSpace(dr):
					n.put(' ', off)
				default:
					n.literalOther(dr, off)
				}
			}
			return
		}
	}
	n.literalOther(r, off)
}

// fastRunes holds what the literal view makes of the runes of the Basic
// Multilingual Plane for which none of the cases of literalRune applies
// (not dropped, not white space or a filler, no digit value, no small
// capital, no compatibility decomposition), so that literalOther alone
// decides: kept is a bit set of those it writes as they are (not a
// look-alike), whatever their context: most of the non-ASCII text in the
// world. look has, for those of the first 2048 that are look-alikes, the
// Latin letter (lower case), with 0x80 set when the rune is upper case.
type fastRunes struct {
	kept [1 << 10]uint64
	look [0x800]byte
}

var fast = sync.OnceValue(func() *fastRunes {
	f := new(fastRunes)
	var b [utf8.UTFMax]byte
	for r := rune(0x80); r < 0x10000; r++ {
		if !utf8.ValidRune(r) || literalDropped(r, utf8.RuneLen(r)) || filler(r) || unicode.IsSpace(r) ||
			digitValue(r) >= 0 || smallCap(r) != 0 {
			continue
		}
		if r < 0xac00 || r > 0xd7a3 {
			if len(norm.NFKD.Properties(b[:utf8.EncodeRune(b[:], r)]).Decomposition()) > 0 {
				continue
			}
		}
		lr := unicode.ToLower(r)
		switch l := lookalike(lr); {
		case l == 0:
			f.kept[r>>6] |= 1 << (r & 63)
		case r < 0x800 && lr != r:
			f.look[r] = l | 0x80
		case r < 0x800:
			f.look[r] = l
		}
	}
	return f
})

// literalOther writes a rune that needs no decomposition, a look-alike as
// its Latin letter.
func (n *normalizer) literalOther(r rune, off int) {
	lr := unicode.ToLower(r)
	if l := lookalike(lr); l != 0 {
		n.lookalike(r, l, lr != r, off)
		return
	}
	n.keep(r, off)
}

// lookalike writes the look-alike r of the Latin letter l (lower case;
// upper says r is upper case): the letter, in r's case, when its word is
// folded, else r.
func (n *normalizer) lookalike(r rune, l byte, upper bool, off int) {
	if off >= n.foldEnd {
		n.fold, n.foldEnd = foldWord(n.text, off)
	}
	if n.fold {
		if upper {
			l -= 0x20
		}
		n.put(l, off)
		return
	}
	n.keep(r, off)
}

// keep writes r as it is.
func (n *normalizer) keep(r rune, off int) {
	var buf [utf8.UTFMax]byte
	k := utf8.EncodeRune(buf[:], r)
	for _, b := range buf[:k] {
		n.dst = append(n.dst, b)
		n.mark(off)
	}
	n.last = buf[k-1]
}

// filler reports the blank letters that render as a space.
func filler(r rune) bool {
	return r == 0x3164 || r == 0x115f || r == 0x1160 || r == 0xffa0 || r == 0x2800
}

// smallCaps maps the small capital letters (IPA and Phonetic Extensions,
// Latin Extended-D) to the ASCII letters they spell.
var smallCaps = map[rune]byte{
	'ᴀ': 'a', 'ʙ': 'b', 'ᴄ': 'c', 'ᴅ': 'd', 'ᴇ': 'e', 'ꜰ': 'f', 'ɢ': 'g', 'ʜ': 'h', 'ɪ': 'i',
	'ᴊ': 'j', 'ᴋ': 'k', 'ʟ': 'l', 'ᴍ': 'm', 'ɴ': 'n', 'ᴏ': 'o', 'ᴘ': 'p', 'ꞯ': 'q', 'ʀ': 'r',
	'ꜱ': 's', 'ᴛ': 't', 'ᴜ': 'u', 'ᴠ': 'v', 'ᴡ': 'w', 'ʏ': 'y', 'ᴢ': 'z',
}

func smallCap(r rune) byte {
	if r < 0x260 || r > 0xa7ff {
		return 0
	}
	return smallCaps[r]
}

// digitValue returns the value of a non-ASCII decimal digit (Unicode Nd:
// Arabic-Indic, Devanagari, fullwidth...), or -1. Every Nd range is made of
// whole blocks of ten, zero first.
func digitValue(r rune) int {
	if r < 0x660 || !unicode.IsDigit(r) {
		return -1
	}
	for _, rg := range unicode.Nd.R16 {
		if lo, hi := rune(rg.Lo), rune(rg.Hi); r >= lo && r <= hi && rg.Stride == 1 && (hi-lo+1)%10 == 0 {
			return int(r-lo) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if lo, hi := rune(rg.Lo), rune(rg.Hi); r >= lo && r <= hi && rg.Stride == 1 && (hi-lo+1)%10 == 0 {
			return int(r-lo) % 10
		}
	}
	return -1
}
