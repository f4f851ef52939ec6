package pii

import (
	"bytes"
	"math/bits"
	"slices"
	"strings"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/blockmask"
)

// vector is whether findObfuscated finds its token bytes with
// blockmask's vector scan (tests turn it off).
var vector = blockmask.Vector()

// Obfuscated addresses: the '@' written as "%40", "&#64;", "&#x40;",
// "&commat;", "[at]", "(at)", "{at}" or "<at>", and the domain's dots as
// ".", "[dot]", "(dot)", "{dot}", "<dot>", "&#46;" or "%2e". A bracketed
// word may have one space on each side ("john [at] example [dot] com").
// The address they spell must pass the same checks as a plain one (a
// public suffix with a registrable label in front), so "meet me at 5 [at]
// the cafe" is no address. ("＠" needs no rule: the filter's view reads it
// as '@'.)

var atTokens = [][]byte{
	[]byte("%40"), []byte("&#64;"), []byte("&#x40;"), []byte("&commat;"),
	[]byte("[at]"), []byte("(at)"), []byte("{at}"), []byte("<at>"),
}

var dotTokens = [][]byte{
	[]byte("[dot]"), []byte("(dot)"), []byte("{dot}"), []byte("<dot>"), []byte("&#46;"), []byte("%2e"),
}

// obfFirst marks the bytes an at-token starts with.
var obfFirst = func() (t [256]bool) {
	for _, tok := range atTokens {
		t[tok[0]] = true
	}
	return t
}()

// maxObf bounds an obfuscated address in bytes: the longest local part and
// domain with every dot spelled out.
const maxObf = maxLocal + 9 + 3*maxDomainRun

// tokenAt returns the length of the token of toks at text[i] (ASCII
// case-insensitively), 0 if none, or -1 if text ends in a prefix of one.
func tokenAt(text []byte, i int, toks [][]byte) int {
	partial := false
	for _, tok := range toks {
		n := min(len(tok), len(text)-i)
		if bytes.EqualFold(text[i:i+n], tok[:n]) {
			if n == len(tok) {
				return n
			}
			partial = true
		}
	}
	if partial {
		return -1
	}
	return 0
}

func bracketed(tok []byte) bool {
	return tok[0] == '[' || tok[0] == '(' || tok[0] == '{' || tok[0] == '<'
}

// obfAt reads an obfuscated address whose at-token of length n starts at
// i. It returns the address's span, or ok false; open reports that text
// ended while the address could still go on.
func obfAt(text []byte, i, n, from int) (start, end int, ok, open bool) {
	br := bracketed(text[i : i+n])
	// The local part, with one space before a bracketed token.
	r := i
	if br && r > 0 && text[r-1] == ' ' {
		r--
	}
	l := r
	for l > 0 && emailClass[text[l-1]] && text[l-1] != '@' && r-l <= maxLocal {
		l--
	}
	if l == r || r-l > maxLocal || l < from || (l > 0 && emailClass[text[l-1]]) {
		return 0, 0, false, false
	}
	var buf [maxLocal + 1 + maxDomainRun]byte
	k := copy(buf[:], text[l:r])
	buf[k] = '@'
	k++
	at := k - 1
	// The domain: labels joined by dots, spelled or not.
	j := i + n
	if br && j < len(text) && text[j] == ' ' {
		j++
	}
	end = -1
	for {
		s := j
		for j < len(text) && (isWord(text[j]) && text[j] != '_' || text[j] == '-') {
			j++
		}
		if j == s || k+j-s >= len(buf) {
			break
		}
		k += copy(buf[k:], text[s:j])
		end = j
		// A dot, spelled or not.
		d := j
		if d < len(text) && text[d] == ' ' {
			d++
		}
		if d == len(text) {
			open = true
			break
		}
		var m int
		if text[d] == '.' && d == j {
			m = 1
		} else if m = tokenAt(text, d, dotTokens); m < 0 {
			open = true
			break
		} else if m == 0 || (d > j && !bracketed(text[d:d+m])) {
			break
		}
		d += m
		if d > j+1 && d < len(text) && text[d] == ' ' && bracketed(text[d-m:d]) {
			d++
		}
		if d == len(text) {
			open = true
			break
		}
		if !(isWord(text[d]) && text[d] != '_') || k+1 >= len(buf) {
			break
		}
		buf[k] = '.'
		k++
		j = d
	}
	if end < 0 {
		return 0, 0, false, open || j == len(text)
	}
	open = open || end == len(text)
	// The spelled address must be an address, ending where the domain
	// does (the dots after the last label were not taken).
	for k > at+1 && buf[k-1] == '.' {
		k--
	}
	if emailAt(buf[:k], 0, at, k) != k || !endOK(text, end) {
		return 0, 0, false, open
	}
	return l, end, true, open
}

// obfStarts are the first bytes of the at-tokens.
const obfStarts = "%&[({<"

// atSecond reports whether an at-token starting with first may go on
// with second: "%40", "&#64;", "&#x40;", "&commat;", "[at]" and the like.
func atSecond(first, second byte) bool {
	switch first {
	case '%':
		return second == '4'
	case '&':
		return second == '#' || second|0x20 == 'c'
	}
	return second|0x20 == 'a'
}

// findObfuscated reports the obfuscated addresses starting at or after
// from. Each token's first byte is looked for with bytes.IndexByte, much
// faster than a byte loop where they are rare, and the byte after it rules
// most out before the tokens are compared; the matches are then put in
// order. With vector scans (blockmask), all six bytes are found in one
// pass instead, and the matches put in the order the six searches give.
func findObfuscated(text []byte, from int, report func(detect.Match)) {
	var buf [8]detect.Match
	ms := buf[:0]
	if vector {
		ms = obfuscatedVector(text, from, ms)
	} else {
		for k := range len(obfStarts) {
			for i := from; i+1 < len(text); i++ {
				j := bytes.IndexByte(text[i:len(text)-1], obfStarts[k])
				if j < 0 {
					break
				}
				i += j
				if m, ok := obfuscatedAt(text, i, from); ok {
					ms = append(ms, m)
				}
			}
		}
	}
	slices.SortFunc(ms, func(a, b detect.Match) int { return a.Start - b.Start })
	last := 0
	for _, m := range ms {
		if m.Start >= last {
			report(m)
			last = m.End
		}
	}
}

// obfuscatedAt returns the obfuscated address whose at-token starts at
// text[i], if there is one.
func obfuscatedAt(text []byte, i, from int) (detect.Match, bool) {
	if !atSecond(text[i], text[i+1]) {
		return detect.Match{}, false
	}
	n := tokenAt(text, i, atTokens)
	if n <= 0 {
		return detect.Match{}, false
	}
	s, e, ok, _ := obfAt(text, i, n, from)
	return detect.Match{Start: s, End: e, Category: CategoryEmail, Detector: "email-obfuscated"}, ok
}

// obfMask is the blockmask table of obfStarts.
var obfMask = blockmask.MustNew(func(c byte) bool { return strings.IndexByte(obfStarts, c) >= 0 })

// obfuscatedVector appends to ms the matches findObfuscated's searches
// find, in their order (by token byte, then by place), from one pass over
// text[from:len(text)-1] for all six bytes.
func obfuscatedVector(text []byte, from int, ms []detect.Match) []detect.Match {
	type hit struct {
		k int // the token byte's index in obfStarts
		m detect.Match
	}
	var hb [8]hit
	hits := hb[:0]
	found := func(i int) {
		if m, ok := obfuscatedAt(text, i, from); ok {
			hits = append(hits, hit{strings.IndexByte(obfStarts, text[i]), m})
		}
	}
	end := len(text) - 1
	var masks [32]uint64
	i := max(from, 0)
	for i < end {
		nb := obfMask.ScanAll(text[i:end], masks[:])
		for w, m := range masks[:nb] {
			for ; m != 0; m &= m - 1 {
				found(i + 64*w + bits.TrailingZeros64(m))
			}
		}
		i += 64 * nb
	}
	// The order of the searches: by token byte, each in place order.
	slices.SortStableFunc(hits, func(a, b hit) int { return a.k - b.k })
	for _, h := range hits {
		ms = append(ms, h.m)
	}
	return ms
}

// localStart returns where the local part in front of the at-token at i
// starts (one space before the token allowed).
func localStart(text []byte, i int) int {
	l := i
	if l > 0 && text[l-1] == ' ' {
		l--
	}
	for l > 0 && emailClass[text[l-1]] && i-l <= maxLocal+1 {
		l--
	}
	return l
}

// holdObfuscated holds a trailing obfuscated address that may still grow,
// a local part followed by the start of an at-token, and a local part
// followed by the one space a bracketed token may come after.
func holdObfuscated(text []byte) int {
	hold := 0
	if n := len(text); n > 1 && text[n-1] == ' ' && emailClass[text[n-2]] {
		if l := localStart(text, n); l < n-1 {
			hold = n - l
		}
	}
	for i := max(0, len(text)-maxObf); i < len(text); i++ {
		if !obfFirst[text[i]] {
			continue
		}
		n := tokenAt(text, i, atTokens)
		if n == 0 {
			continue
		}
		if n > 0 {
			if _, _, _, open := obfAt(text, i, n, 0); !open {
				continue
			}
		}
		if l := localStart(text, i); l < i {
			return max(hold, len(text)-l)
		}
		if n < 0 {
			return max(hold, len(text)-i)
		}
	}
	return hold
}
