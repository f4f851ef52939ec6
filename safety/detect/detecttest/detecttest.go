// Package detecttest checks the streaming contract of detect.Detector: a
// text scanned in any chunking yields the matches it yields scanned whole.
package detecttest

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
)

// Whole returns the matches of d over text scanned in one piece.
func Whole(d detect.Detector, text []byte) []detect.Match {
	var ms []detect.Match
	d.Find(text, 0, func(m detect.Match) { ms = append(ms, m) })
	return ms
}

// Stream scans text the way the filter engine does, delivering it in the
// given chunk sizes (the last chunk takes what is left), and returns the
// matches in absolute offsets and the largest hold-back it saw.
func Stream(d detect.Detector, text []byte, sizes []int) (ms []detect.Match, maxHold int) {
	var (
		released int // text[:released] has gone to the reader
		end      int // text[:end] has arrived
	)
	step := func(final bool) {
		ctx := max(0, released-detect.Context)
		window := text[ctx:end]
		from := released - ctx
		var found []detect.Match
		d.Find(window, from, func(m detect.Match) { found = append(found, m) })
		cut := len(window)
		if !final {
			h := d.Hold(window)
			maxHold = max(maxHold, h)
			cut = len(window) - h
			for changed := true; changed; {
				changed = false
				for _, m := range found {
					if m.Start < cut && m.End > cut {
						cut, changed = m.Start, true
					}
				}
			}
			cut = max(cut, from)
			for cut > from && cut < len(window) && !utf8.RuneStart(window[cut]) {
				cut--
			}
		}
		for _, m := range found {
			if m.End <= cut {
				m.Start += ctx
				m.End += ctx
				ms = append(ms, m)
			}
		}
		released = ctx + cut
	}
	for _, n := range sizes {
		if end >= len(text) {
			break
		}
		end = min(len(text), end+max(1, n))
		step(false)
	}
	end = len(text)
	step(true)
	return ms, maxHold
}

// Chunked compares Stream and Whole for one chunking and returns a
// description of the first difference, or "" when they agree. It also
// checks the Match invariants: order, no overlap, rune boundaries, bounds.
func Chunked(d detect.Detector, text []byte, sizes []int) string {
	whole := Whole(d, text)
	if msg := check(text, whole); msg != "" {
		return "whole: " + msg
	}
	stream, hold := Stream(d, text, sizes)
	if hold > detect.MaxHold {
		return fmt.Sprintf("hold %d > MaxHold", hold)
	}
	if !slices.Equal(whole, stream) {
		return fmt.Sprintf("chunks %v:\nwhole  %v\nstream %v", sizes, whole, stream)
	}
	return ""
}

func check(text []byte, ms []detect.Match) string {
	last := 0
	for _, m := range ms {
		switch {
		case m.Start < last || m.End <= m.Start || m.End > len(text):
			return fmt.Sprintf("bad span %v after %d (len %d)", m, last, len(text))
		case !boundary(text, m.Start) || !boundary(text, m.End):
			return fmt.Sprintf("span %v not on rune boundaries", m)
		case m.Category == "":
			return fmt.Sprintf("span %v has no category", m)
		}
		last = m.End
	}
	return ""
}

func boundary(text []byte, i int) bool {
	return i == len(text) || utf8.RuneStart(text[i])
}

// SharedDigits checks that a detect.DigitFinder finds the same matches
// through FindDigits, from every offset, as through Find, and returns a
// description of the first difference, or "" when they agree (or d is
// not a DigitFinder).
func SharedDigits(d detect.Detector, text []byte) string {
	df, ok := d.(detect.DigitFinder)
	if !ok {
		return ""
	}
	var digits detect.Digits
	digits.Scan(text)
	return sameAsFind(d, text, "FindDigits", func(from int, report func(detect.Match)) {
		df.FindDigits(text, from, &digits, report)
	})
}

// SharedSpecials checks that a detect.SpecialFinder finds the same
// matches through FindSpecial, from every offset, as through Find, and
// returns a description of the first difference, or "" when they agree
// (or d is not a SpecialFinder).
func SharedSpecials(d detect.Detector, text []byte) string {
	sf, ok := d.(detect.SpecialFinder)
	if !ok {
		return ""
	}
	var sp detect.Specials
	sp.Scan(text)
	return sameAsFind(d, text, "FindSpecial", func(from int, report func(detect.Match)) {
		sf.FindSpecial(text, from, &sp, report)
	})
}

// sameAsFind compares d.Find with shared (named name) from every offset
// and describes the first difference.
func sameAsFind(d detect.Detector, text []byte, name string, shared func(from int, report func(detect.Match))) string {
	for from := 0; from <= len(text); from += 1 + from/4 {
		var find, got []detect.Match
		d.Find(text, from, func(m detect.Match) { find = append(find, m) })
		shared(from, func(m detect.Match) { got = append(got, m) })
		if !slices.Equal(find, got) {
			return fmt.Sprintf("from %d: Find %v, %s %v", from, find, name, got)
		}
	}
	return ""
}

// Sizes turns fuzz bytes into chunk sizes (1..64).
func Sizes(b []byte) []int {
	s := make([]int, len(b))
	for i, c := range b {
		s[i] = int(c%64) + 1
	}
	return s
}
