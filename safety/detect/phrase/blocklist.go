package phrase

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// MaxTermLen is the longest blocklist term, in bytes of its normalized
// form.
const MaxTermLen = 128

// ErrBadTerm is wrapped by the errors NewBlocklist and LoadBlocklist return
// for a term they cannot match.
var ErrBadTerm = errors.New("bad blocklist term")

// NewBlocklist returns a detector for user term lists: lists maps a
// category name of the user's choosing (Llama Guard codes "S1".."S14",
// "internal"...) to its terms. A term matches as whole words, whatever the
// case, width or look-alike spelling (matching runs on norm's normalized
// view), and may have several words; Match.Category is the term's list and
// Match.Detector is "blocklist". Of overlapping terms the leftmost, then
// the longest, wins; a term in several lists is reported under the first
// list in name order. A term must have a letter or digit and be at most
// MaxTermLen bytes once normalized.
func NewBlocklist(lists map[string][]string) (detect.Detector, error) {
	b := &blocklist{}
	cats := make([]string, 0, len(lists))
	for c := range lists {
		cats = append(cats, c)
	}
	slices.Sort(cats)
	seen := map[string]bool{}
	var pats [][]byte
	for _, c := range cats {
		for _, t := range lists[c] {
			v, err := normTerm(t)
			if err != nil {
				return nil, fmt.Errorf("blocklist %s: %w", c, err)
			}
			if seen[string(v)] {
				continue
			}
			seen[string(v)] = true
			first, _ := utf8.DecodeRune(v)
			last, _ := utf8.DecodeLastRune(v)
			pats = append(pats, v)
			b.terms = append(b.terms, term{cat: c, left: wordRune(first), right: wordRune(last)})
			b.maxLen = max(b.maxLen, len(v))
		}
	}
	b.a = build(pats)
	return b, nil
}

func normTerm(t string) ([]byte, error) {
	v, _ := norm.Normalize(nil, nil, []byte(t))
	v = bytes.TrimSpace(v)
	if !bytes.ContainsFunc(v, func(r rune) bool { return wordRune(r) || cjk(r) }) {
		return nil, fmt.Errorf("%w %q: no letter or digit", ErrBadTerm, t)
	}
	if len(v) > MaxTermLen {
		return nil, fmt.Errorf("%w %.20q...: longer than %d bytes", ErrBadTerm, t, MaxTermLen)
	}
	return v, nil
}

// LoadBlocklist reads term files, one term per line, for NewBlocklist:
// files maps a category to a file name. Blank lines and lines starting
// with '#' are skipped; a bad term is an error naming the file and line.
func LoadBlocklist(files map[string]string) (detect.Detector, error) {
	lists := map[string][]string{}
	for c, name := range files {
		terms, err := readTerms(name)
		if err != nil {
			return nil, err
		}
		lists[c] = terms
	}
	return NewBlocklist(lists)
}

func readTerms(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read blocklist: %w", err)
	}
	defer f.Close()
	var terms []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if !utf8.ValidString(l) {
			return nil, fmt.Errorf("%s:%d: %w: invalid UTF-8", name, n, ErrBadTerm)
		}
		if _, err := normTerm(l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		terms = append(terms, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read blocklist %s: %w", name, err)
	}
	return terms, nil
}

type blocklist struct {
	a      *automaton
	terms  []term
	maxLen int
}

type term struct {
	cat         string
	left, right bool // needs a word boundary on that side
}

func (b *blocklist) Category() string { return "blocklist" }

func (b *blocklist) Find(text []byte, from int, report func(detect.Match)) {
	if len(b.terms) == 0 {
		return
	}
	v := getView(text)
	defer v.release()
	var (
		lastEnd int
		ps, pe  = -1, -1 // the pending candidate, in the view
		pt      int
	)
	flush := func() {
		if ps < 0 {
			return
		}
		os, oe := v.start(ps), v.end(pe)
		if oe-os <= maxSpan {
			report(detect.Match{Start: os, End: oe, Category: b.terms[pt].cat, Detector: "blocklist"})
			lastEnd = pe
		}
		ps = -1
	}
	b.a.scan(v.dst, func(end int, s uint32) {
		for _, p := range b.a.outs[s] {
			ns, t := end-int(b.a.plen[p]), &b.terms[p]
			if ns < lastEnd || t.left && v.wordBefore(ns) || t.right && v.wordAt(end) || v.start(ns) < from {
				continue
			}
			switch {
			case ps < 0 || ns < ps || ns == ps && end > pe:
				ps, pe, pt = ns, end, int(p)
			case ns >= pe:
				flush()
				if ns >= lastEnd {
					ps, pe, pt = ns, end, int(p)
				}
			}
		}
	})
	flush()
}

// Hold keeps the automaton's live prefix and the trailing word.
func (b *blocklist) Hold(text []byte) int {
	if len(b.terms) == 0 {
		return 0
	}
	tail, off := holdTail(text)
	v := getView(tail)
	defer v.release()
	hold := len(text) - off - len(tail)
	at := len(v.dst)
	last := b.a.scan(v.dst, func(end int, s uint32) {
		if end == len(v.dst) {
			// A term ending at the end may still grow over stray
			// continuation bytes (norm.RuneEnd).
			for _, p := range b.a.outs[s] {
				at = min(at, end-int(b.a.plen[p]))
			}
		}
	})
	if l := int(b.a.live[last]); l > 0 {
		at = min(at, len(v.dst)-l)
	}
	if ws, ok := v.trailingWord(b.maxLen); ok {
		at = min(at, ws)
	}
	if at < len(v.dst) {
		if h := len(text) - (off + v.start(at)); h <= maxSpan {
			hold = max(hold, h)
		}
	}
	return min(hold, detect.MaxHold)
}
