package norm

import (
	"encoding/binary"
	"math/bits"
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
)

// Hidden character kinds, named as the hidden_unicode detector reports them.
const (
	hNone = iota
	hTag
	hZeroWidth
	hBidi
	hVariation
)

var hiddenNames = [...]string{"", "tag", "zero_width", "bidi", "variation_selector"}

// maxRun is the longest run of hidden characters reported as one match;
// the runes of a longer run are reported one by one. Keeping it under
// detect.Context/4 lets a window that starts inside a run tell a long run
// from a short one by what it sees, so chunked and whole scans agree.
const maxRun = 12

// NewHiddenUnicode returns the hidden_unicode detector. It reports, under
// category "hidden_unicode":
//   - "tag": Unicode tag characters U+E0000–U+E007F (ASCII smuggling), except
//     a flag emoji tag sequence (U+1F3F4, one to seven tag letters or digits,
//     U+E007F);
//   - "zero_width": U+200B–U+200D, U+2060–U+2064, U+FEFF (except a byte-order
//     mark at the very start), U+00AD and U+180E; a zero-width joiner between
//     two emoji and a joiner or non-joiner between letters of scripts that
//     use them (Arabic, Persian, Indic...) are normal and not reported;
//   - "bidi": the embedding, override and isolate controls U+202A–U+202E
//     and U+2066–U+2069 ("Trojan Source"); the plain marks U+200E/U+200F are
//     left alone, they are common in right-to-left text;
//   - "variation_selector": runs of two or more variation selectors (data
//     smuggled after an emoji) and a supplementary selector U+E0100–U+E01EF
//     after anything but an ideograph; one U+FE00–U+FE0F is normal.
//
// A run of up to 12 hidden characters of one kind is one match; the
// characters of a longer run are reported one at a time.
func NewHiddenUnicode() detect.Detector { return hidden{} }

type hidden struct{}

var _ detect.SpecialFinder = hidden{}

func (hidden) Category() string { return "hidden_unicode" }

// RawText marks the detector as reading the original text (detect.Raw):
// it reports what the view drops.
func (hidden) RawText() {}

func hiddenKind(r rune) int {
	switch {
	case r < 0xad:
		return hNone
	case r >= 0xe0000 && r <= 0xe007f:
		return hTag
	case r == 0xad, r == 0x180e, r == 0xfeff, r >= 0x200b && r <= 0x200d, r >= 0x2060 && r <= 0x2064:
		return hZeroWidth
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return hBidi
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef:
		return hVariation
	}
	return hNone
}

// pictographic approximates Extended_Pictographic: what a zero-width
// joiner may join.
func pictographic(r rune) bool {
	switch {
	case r >= 0x1f000 && r <= 0x1faff, r >= 0x2600 && r <= 0x27bf, r >= 0x2300 && r <= 0x23ff,
		r >= 0x2b00 && r <= 0x2bff, r >= 0x2190 && r <= 0x21ff, r >= 0x25a0 && r <= 0x25ff:
		return true
	case r == 0xa9, r == 0xae, r == 0x203c, r == 0x2049, r == 0x2122, r == 0x2139,
		r == 0x3030, r == 0x303d, r == 0x3297, r == 0x3299, r == 0x2934, r == 0x2935:
		return true
	}
	return false
}

// joinerLetter reports whether r is a letter or mark of a script that uses
// ZWJ/ZWNJ in ordinary writing (anything but Latin, Greek and Cyrillic).
func joinerLetter(r rune) bool {
	return r >= 0x590 && (unicode.IsLetter(r) || unicode.IsMark(r))
}

func decodeAt(text []byte, i int) (rune, int) {
	if i >= len(text) {
		return -1, 0
	}
	return utf8.DecodeRune(text[i:])
}

func decodeBefore(text []byte, i int) rune {
	if i <= 0 {
		return -1
	}
	r, _ := utf8.DecodeLastRune(text[:i])
	return r
}

// flagSeq reports the length of a valid flag tag sequence starting with the
// U+1F3F4 at i, or 0.
func flagSeq(text []byte, i int) int {
	j := i + 4
	for n := 0; n <= 7; n++ {
		r, size := decodeAt(text, j)
		switch {
		case r == 0xe007f && n > 0:
			return j + size - i
		case r >= 0xe0030 && r <= 0xe0039, r >= 0xe0061 && r <= 0xe007a:
			j += size
		default:
			return 0
		}
	}
	return 0
}

// pendingFlag reports whether text ends in U+1F3F4 and up to seven tag
// letters that may still become a flag sequence, and where it starts.
func pendingFlag(text []byte) (int, bool) {
	j := len(text)
	for n := 0; n <= 7 && j > 0; n++ {
		r, size := utf8.DecodeLastRune(text[:j])
		switch {
		case r == 0x1f3f4:
			return j - size, true
		case r >= 0xe0030 && r <= 0xe0039, r >= 0xe0061 && r <= 0xe007a:
			j -= size
		default:
			return 0, false
		}
	}
	return 0, false
}

// flagged decides whether the hidden rune r of kind k at [i, i+size) is
// reported, from its neighbours.
func flagged(text []byte, from, i, size int, r rune, k int) bool {
	switch k {
	case hZeroWidth:
		switch r {
		case 0xfeff:
			return i > 0 || from > 0
		case 0x200c, 0x200d:
			prev := decodeBefore(text, i)
			next, _ := decodeAt(text, i+size)
			if joinerLetter(prev) && joinerLetter(next) {
				return false
			}
			if r == 0x200d && pictographic(next) &&
				(pictographic(prev) || prev == 0xfe0f || prev == 0x20e3 || prev == 0xe007f) {
				return false
			}
		}
		return true
	case hVariation:
		prev := decodeBefore(text, i)
		next, _ := decodeAt(text, i+size)
		if hiddenKind(prev) == hVariation || hiddenKind(next) == hVariation {
			return true
		}
		if r >= 0xe0100 {
			return prev < 0 || !unicode.Is(unicode.Ideographic, prev)
		}
		return false
	}
	return true
}

func (hidden) Find(text []byte, from int, report func(detect.Match)) {
	hscan(text, from, nil, report)
}

// FindSpecial is Find stepping from one special byte of text to the next
// (detect.SpecialFinder): hidden characters are not ASCII.
func (hidden) FindSpecial(text []byte, from int, sp *detect.Specials, report func(detect.Match)) {
	hscan(text, from, sp, report)
}

// hscan reports the hidden characters of text at or after from and returns
// the trailing run: its kind (hNone if text does not end in one), start and
// length in runes. sp, when not nil, holds text's special bytes.
func hscan(text []byte, from int, sp *detect.Specials, report func(detect.Match)) (runKind, runStart, runLen int) {
	var runEnd int
	flush := func() {
		if runKind != hNone && runLen <= maxRun && runStart >= from && report != nil {
			report(detect.Match{Start: runStart, End: RuneEnd(text, runEnd), Category: "hidden_unicode", Detector: hiddenNames[runKind]})
		}
		runKind, runLen = hNone, 0
	}
	one := func(k, i, size int) {
		if i >= from && report != nil {
			report(detect.Match{Start: i, End: RuneEnd(text, i+size), Category: "hidden_unicode", Detector: hiddenNames[k]})
		}
	}
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			if runKind != hNone {
				flush()
			}
			i = skipASCII(text, i, sp)
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if r == 0x1f3f4 {
			if n := flagSeq(text, i); n > 0 {
				flush()
				i += n
				continue
			}
		}
		k := hiddenKind(r)
		if k == hNone || !flagged(text, from, i, size, r, k) {
			flush()
			i += size
			continue
		}
		if k != runKind {
			flush()
			runKind, runStart = k, i
		}
		runLen++
		runEnd = i + size
		if runLen == maxRun+1 {
			// Too long for one match: report the runes one by one,
			// those seen so far included.
			for j := runStart; j < i; {
				_, n := utf8.DecodeRune(text[j:])
				one(k, j, n)
				j += n
			}
		}
		if runLen > maxRun {
			one(k, i, size)
		}
		i += size
	}
	if runKind != hNone && runEnd != len(text) {
		flush()
	}
	k, s, n := runKind, runStart, runLen
	flush()
	return k, s, n
}

// skipASCII moves past the ASCII byte at i: to the first non-ASCII byte
// after it, or, when sp holds text's special bytes, to the first special
// byte after it (a non-ASCII byte or one of the few special ASCII bytes,
// which the caller skips in turn).
func skipASCII(text []byte, i int, sp *detect.Specials) int {
	if sp != nil {
		return sp.Next(i + 1)
	}
	const hi = 0x8080808080808080
	for ; i+16 <= len(text); i += 16 {
		a, b := binary.LittleEndian.Uint64(text[i:]), binary.LittleEndian.Uint64(text[i+8:])
		if (a|b)&hi != 0 {
			if a&hi != 0 {
				return i + bits.TrailingZeros64(a&hi)/8
			}
			return i + 8 + bits.TrailingZeros64(b&hi)/8
		}
	}
	for i < len(text) && text[i] < utf8.RuneSelf {
		i++
	}
	return i
}

// Hold keeps the trailing run of hidden characters while it could still
// grow into (or out of) one match, the last hidden character (its verdict
// depends on what follows), a flag sequence still missing its cancel tag,
// and an unfinished UTF-8 sequence.
func (hidden) Hold(text []byte) int {
	end := len(text) - Pending(text)
	hold := len(text) - end
	t := text[:end]
	// The verdicts near the end depend on at most a few runes before
	// them; scan a tail that starts on a rune boundary.
	start := max(0, end-4*(2*maxRun+8))
	for start > 0 && start < end && !utf8.RuneStart(t[start]) {
		start++
	}
	tail := t[start:]
	k, s, n := hscan(tail, len(tail), nil, nil)
	if k != hNone && n <= maxRun {
		hold = max(hold, len(text)-(start+s))
	}
	if r, size := utf8.DecodeLastRune(tail); hiddenKind(r) != hNone || r == 0x1f3f4 {
		// What follows decides the verdict on a joiner or selector.
		hold = max(hold, len(text)-(end-size))
	}
	if s, ok := pendingFlag(t); ok {
		hold = max(hold, len(text)-s)
	}
	return min(hold, detect.MaxHold)
}
