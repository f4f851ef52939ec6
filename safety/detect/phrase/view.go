package phrase

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// maxSpan bounds a match in original bytes. Matches longer than this are
// dropped, so a candidate older than maxSpan bytes is dead and Hold never
// needs more than maxSpan (< detect.MaxHold). A phrase this long is
// possible only when hundreds of invisible characters are woven into it,
// and those are reported by hidden_unicode.
const maxSpan = 4096

// view is a reusable normalized view of a window.
type view struct {
	text []byte // the original window
	dst  []byte
	offs []int32

	threads []thread  // the injection runner's, reused
	segs    []segment // the injection prefilter's, reused
	spent   int       // bytes the prefilter read again to judge candidates
}

var views = sync.Pool{New: func() any { return new(view) }}

func getView(text []byte) *view {
	v := views.Get().(*view)
	v.text = text
	v.dst, v.offs = norm.Normalize(v.dst, v.offs, text)
	return v
}

func (v *view) release() {
	v.text = nil
	if cap(v.dst) > 2<<20 {
		v.dst, v.offs = nil, nil
	}
	views.Put(v)
}

// start and end map a span [s, e) of the view to the original window.
func (v *view) start(s int) int { return int(v.offs[s]) }
func (v *view) end(e int) int   { return norm.End(v.text, v.offs, e) }

// cjk reports whether r is written without spaces between words (Han,
// kana), so that a word boundary is not needed around it.
func cjk(r rune) bool {
	return r >= 0x3040 && r <= 0x30ff || r >= 0x3400 && r <= 0x4dbf || r >= 0x4e00 && r <= 0x9fff ||
		r >= 0xf900 && r <= 0xfaff || r >= 0x20000 && r <= 0x2ffff
}

// wordRune reports whether r continues a word for boundary purposes.
func wordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z'
	}
	return (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) && !cjk(r)
}

// wordBefore reports whether the view has a word rune right before i.
func (v *view) wordBefore(i int) bool {
	if i == 0 {
		return false
	}
	if c := v.dst[i-1]; c < utf8.RuneSelf {
		return wordRune(rune(c))
	}
	r, _ := utf8.DecodeLastRune(v.dst[:i])
	return wordRune(r)
}

// wordAt reports whether the view has a word rune at i.
func (v *view) wordAt(i int) bool {
	if i >= len(v.dst) {
		return false
	}
	if c := v.dst[i]; c < utf8.RuneSelf {
		return wordRune(rune(c))
	}
	r, _ := utf8.DecodeRune(v.dst[i:])
	return wordRune(r)
}

// trailingWord returns the start of the word the view ends in, if it is at
// most limit bytes long and could still grow into a term.
func (v *view) trailingWord(limit int) (int, bool) {
	i := len(v.dst)
	for i > 0 && len(v.dst)-i <= limit {
		r, n := utf8.DecodeLastRune(v.dst[:i])
		if !wordRune(r) && !cjk(r) {
			break
		}
		i -= n
	}
	if i == len(v.dst) || len(v.dst)-i > limit {
		return 0, false
	}
	return i, true
}

// holdTail returns the part of text Hold analyses: enough to see every
// candidate that may still be live (maxSpan) plus context for its left
// boundary, starting on a rune boundary, and the offset it starts at.
func holdTail(text []byte) ([]byte, int) {
	end := len(text) - norm.Pending(text)
	start := max(0, end-maxSpan-2*detect.Context)
	for start > 0 && start < end && !utf8.RuneStart(text[start]) {
		start++
	}
	return text[start:end], start
}
