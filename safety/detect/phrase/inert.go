package phrase

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect/norm"
)

// inertRunes has a bit set for each rune below inertLimit that is inert:
// the view reads it, wherever it stands, as itself or its lower case, a
// non-ASCII rune. An inert rune spells no part of a Latin word (it is not
// invisible, not a look-alike, has no decomposition to ASCII, is not
// white space) and starts no CJK start token, so a run of inert runes
// starts no phrase, and the ASCII words next to it read in the view as
// they are (or are glued to a letter, and start nothing). Most letters of
// other scripts, CJK ideographs and typographic punctuation are inert;
// Cyrillic and Greek look-alikes, accented Latin letters, fullwidth
// forms and invisible characters are not.
var (
	inertOnce  sync.Once
	inertRunes []uint64
	// plainLookalikes are the Cyrillic and Greek letters that read as
	// Latin letters in a word of look-alikes, but as themselves in a word
	// with another Cyrillic or Greek letter; cyrGreek are the inert
	// Cyrillic and Greek letters.
	plainLookalikes, cyrGreek []uint64
)

const inertLimit = 0xa000

func inert(r rune, size int) bool {
	if r >= inertLimit || r == utf8.RuneError && size == 1 {
		return false
	}
	inertOnce.Do(buildInert)
	return inertRunes[r/64]&(1<<(r%64)) != 0
}

func hasBit(bits []uint64, r rune) bool { return bits[r/64]&(1<<(r%64)) != 0 }

// inertWord reports whether text[i:j], a run of non-ASCII with ASCII
// that is not a letter, digit or apostrophe (or nothing) on either side,
// is one Cyrillic or Greek word the view reads as itself: letters only,
// among them an inert one, so the look-alikes in it stay as they are
// (Russian "Ответ", with a Cyrillic О and е but also т and в).
func inertWord(text []byte, i, j int) bool {
	if i > 0 && (isAlnum(text[i-1]) || text[i-1] == '\'') || j < len(text) && (isAlnum(text[j]) || text[j] == '\'') {
		return false
	}
	plain := false
	for k := i; k < j; {
		r, size := utf8.DecodeRune(text[k:])
		k += size
		switch {
		case r >= inertLimit:
			return false
		case hasBit(cyrGreek, r):
			plain = true
		case !hasBit(plainLookalikes, r):
			return false
		}
	}
	return plain
}

func buildInert() {
	starts := map[rune]bool{}
	for i, t := range injection.toks {
		if isStart(t.class) {
			if r, _ := utf8.DecodeRune(injection.pats[i]); r >= utf8.RuneSelf {
				starts[r] = true
			}
		}
	}
	bits := make([]uint64, inertLimit/64)
	var buf [utf8.UTFMax]byte
	var dst []byte
	var offs []int32
	for r := rune(0x80); r < inertLimit; r++ {
		if starts[r] || r >= 0xd800 && r < 0xe000 {
			continue
		}
		n := utf8.EncodeRune(buf[:], r)
		dst, offs = norm.Normalize(dst, offs, buf[:n])
		if len(dst) == 0 || !utf8.FullRune(dst) {
			continue
		}
		if v, _ := utf8.DecodeRune(dst); v >= utf8.RuneSelf && len(dst) == utf8.RuneLen(v) {
			bits[r/64] |= 1 << (r % 64)
		}
	}
	inertRunes = bits
	plainLookalikes = make([]uint64, inertLimit/64)
	cyrGreek = make([]uint64, inertLimit/64)
	const zhe = 'ж' // an inert Cyrillic letter
	for r := rune(0x370); r < 0x530; r++ {
		if !unicode.IsLetter(r) || !unicode.Is(unicode.Cyrillic, r) && !unicode.Is(unicode.Greek, r) {
			continue
		}
		if hasBit(bits, r) {
			cyrGreek[r/64] |= 1 << (r % 64)
			continue
		}
		w := []byte(string([]rune{zhe, r, zhe}))
		dst, offs = norm.Normalize(dst, offs, w)
		ascii := false
		for _, c := range dst {
			ascii = ascii || c < utf8.RuneSelf
		}
		if !ascii {
			plainLookalikes[r/64] |= 1 << (r % 64)
		}
	}
}

// latinLimit bounds the runes latinLetters knows.
const latinLimit = 0x2000

var (
	latinOnce sync.Once
	// latinLetters maps each rune below latinLimit that the view reads,
	// wherever it stands, as one ASCII letter (a Latin letter with
	// diacritics: ä, É, ñ...) to that letter, and the others to 0.
	latinLetters []byte
)

func latinLetter(r rune) byte {
	if r >= latinLimit {
		return 0
	}
	latinOnce.Do(buildLatin)
	return latinLetters[r]
}

func buildLatin() {
	t := make([]byte, latinLimit)
	var dst []byte
	var offs []int32
	for r := rune(0x80); r < latinLimit; r++ {
		if r >= 0x300 && r <= 0x36f {
			continue // a combining mark, dropped
		}
		s := string(r)
		dst, offs = norm.Normalize(dst, offs, []byte(s))
		if len(dst) != 1 || !isLetter(dst[0]) {
			continue
		}
		l := dst[0]
		// The same between letters, Cyrillic letters and look-alikes, and
		// spaces. (A leet digit right before it stays a digit, where it
		// would read as a letter before an ASCII letter: firstWord reads
		// every leet digit as its letter, so it covers both.)
		ok := true
		for _, ctx := range [...][2]string{{"x", "x"}, {"ж", "ж"}, {"о", "о"}, {" ", " "}} {
			dst, offs = norm.Normalize(dst, offs, []byte(ctx[0]+s+ctx[1]))
			got := string(dst)
			dst, offs = norm.Normalize(dst, offs, []byte(ctx[0]+string(l)+ctx[1]))
			ok = ok && got == string(dst)
		}
		if ok {
			t[r] = l
		}
	}
	latinLetters = t
}

// plainWord reports whether the live run of non-ASCII at text[i:] is made
// of Latin letters (latinLetter) inside a word of ASCII letters and
// digits and such runs, with ASCII that is neither (or the text's ends)
// on both sides, and that word, as the view reads it (with the base
// letters), is not a first word. Such a run starts nothing: a start token
// that needs a left boundary would begin at the word's start and be a
// first word; one that needs none begins with a marker byte or is CJK.
// end is the word's end: the other runs in it start nothing either.
func (p *prefilter) plainWord(text []byte, i int) (end int, ok bool) {
	s := i
	for s > 0 && isAlnum(text[s-1]) {
		s--
	}
	if s > 0 && text[s-1] >= 0x80 {
		return 0, false
	}
	var buf [33]byte
	n, k := 0, s
	for k < len(text) {
		c := text[k]
		switch {
		case c >= 0x80:
			r, size := utf8.DecodeRune(text[k:])
			if c = latinLetter(r); c == 0 {
				return 0, false
			}
			k += size
		case isAlnum(c):
			k++
		default:
			return k, n > len(buf)-1 || !p.firstWord(buf[:n])
		}
		if n < len(buf) {
			buf[n] = c
		}
		n++
	}
	return k, n > len(buf)-1 || !p.firstWord(buf[:n])
}
