package norm

import (
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
)

// maxWord is the longest word, in bytes, the confusable detector judges;
// longer runs of letters are not words anyone reads, and bounding them
// bounds what a stream holds back.
const maxWord = 256

// NewConfusable returns the confusable detector. It reports, under category
// "confusable" and detector "mixed_script", a word (a run of letters,
// digits, marks and invisible characters) that
//   - mixes Latin letters with Cyrillic or Greek look-alikes of Latin
//     letters ("pаypal" with a Cyrillic а), or
//   - spells a Latin word in mathematical letters (two or more, "𝐢𝐠𝐧𝐨𝐫𝐞")
//     or in fullwidth letters (three or more with at least one lower-case
//     one, "ｉｇｎｏｒｅ"; upper-case fullwidth acronyms such as "ＰＤＦ" are
//     ordinary in Japanese text).
//
// Words made only of Cyrillic or Greek letters are real words of those
// languages and are not reported, nor are letters that merely look Greek
// in scientific use (μ, Ω, π: not look-alikes of a Latin letter).
func NewConfusable() detect.Detector { return confusable{} }

type confusable struct{}

var _ detect.SpecialFinder = confusable{}

func (confusable) Category() string { return "confusable" }

// RawText marks the detector as reading the original text (detect.Raw):
// it judges the raw letters.
func (confusable) RawText() {}

// suspect reports whether r may make its word confusable.
func suspect(r rune) bool {
	return r >= 0x370 && r <= 0x52f || r >= 0xff21 && r <= 0xff5a || r >= 0x1d400 && r <= 0x1d6a5
}

func (confusable) Find(text []byte, from int, report func(detect.Match)) {
	findConfusable(text, from, nil, report)
}

// FindSpecial is Find stepping from one special byte of text to the next
// (detect.SpecialFinder): a confusable word holds a non-ASCII letter.
func (confusable) FindSpecial(text []byte, from int, sp *detect.Specials, report func(detect.Match)) {
	findConfusable(text, from, sp, report)
}

// findConfusable reports the confusable words of text at or after from;
// sp, when not nil, holds text's special bytes.
func findConfusable(text []byte, from int, sp *detect.Specials, report func(detect.Match)) {
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			i = skipASCII(text, i, sp)
			continue
		}
		r, size := utf8.DecodeRune(text[i:])
		if !suspect(r) {
			i += size
			continue
		}
		if _, ok := classify(r); !ok {
			// A suspect rune outside any word (Greek punctuation,
			// an unassigned code point) would find the word before
			// it, already judged at its own suspect rune.
			i += size
			continue
		}
		start, end, class := word(text, i)
		if start >= from && end-start <= maxWord && confusableClass(class, text[start:end]) {
			report(detect.Match{Start: start, End: RuneEnd(text, end), Category: "confusable", Detector: "mixed_script"})
		}
		i = max(end, i+size)
	}
}

// confusableClass is confusableWord for a word whose class bits (see
// word) are known: most words are judged by them alone.
func confusableClass(class uint8, w []byte) bool {
	switch {
	case class&wOther != 0:
		return false
	case class&wLookalike != 0 && class&wLatin != 0:
		return true
	case class&(wLookalike|wCyrGreek) != 0, class&wWide == 0:
		return false
	}
	return confusableWord(w)
}

// confusableWord applies the rules of NewConfusable to one word.
func confusableWord(w []byte) bool {
	var (
		class                  uint8
		wide, wideLower, maths int
	)
	for i := 0; i < len(w); {
		r, size := utf8.DecodeRune(w[i:])
		i += size
		c, _ := classify(r)
		class |= c
		if c&wWide != 0 {
			wide++
			if c&wWideLower != 0 {
				wideLower++
			}
			if r >= 0x1d400 {
				maths++
			}
		}
	}
	switch {
	case class&wOther != 0:
		return false
	case class&wLookalike != 0 && class&wLatin != 0:
		return true
	case class&(wLookalike|wCyrGreek) != 0:
		return false
	}
	return maths >= 2 || wide >= 3 && wideLower > 0
}

// Hold keeps the trailing word: a letter arriving next may make it mixed.
func (confusable) Hold(text []byte) int {
	p := Pending(text)
	j := len(text) - p
	for j > 0 && len(text)-p-j <= maxWord {
		r, size := utf8.DecodeLastRune(text[:j])
		if _, ok := classify(r); !ok || r == utf8.RuneError && size == 1 {
			break
		}
		j -= size
	}
	if len(text)-p-j > maxWord {
		return min(p, detect.MaxHold)
	}
	return min(len(text)-j, detect.MaxHold)
}
