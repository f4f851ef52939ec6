package classifier

import (
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect/norm"
)

// Features per token, each a hashed n-gram:
//   - the word itself (a word unigram),
//   - the previous word and this one (a word bigram),
//   - the word's first four bytes and its last four (the character 4-grams
//     at the word's edges: "inst…", "…ions", which carry stems and endings
//     across inflection and compounds, "Anweisungen" and "instructions"),
//   - the previous word's first five bytes and this one's (a bigram of
//     stems: "ignor prev", "vergi alles").
//
// Letters are lower-cased (ASCII by table, the rest through package
// unicode), Latin-1 letters lose their accents, invisible characters are
// skipped inside a word, and every other byte separates words. Scripts
// written without spaces (Han, Hiragana, Katakana, Thai) give one token per
// character, so their unigrams and bigrams are character n-grams. A word
// of more than maxWord bytes (a hash, a base64 blob) reads as one "long
// word" whatever its bytes, and a word repeated right after itself is read
// once, so that neither random bytes nor a flood of one word can tip a
// window.
const NumFeatures = 5

// maxWord is the longest word read as itself.
const maxWord = 24

// A Token is one word of a text: its byte span and its features, each a
// hash to be reduced to the model's table size.
type Token struct {
	Start, End int
	F          [NumFeatures]uint64
}

// Hash constants: FNV-1a over the bytes of a word, mixed per feature kind.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// ASCII byte classes.
const (
	sep = iota
	lower
	upper
	high // >= 0x80: decode a rune
)

var class [256]uint8

func init() {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			class[c] = lower
		case c >= 'A' && c <= 'Z':
			class[c] = upper
		case c >= 0x80:
			class[c] = high
		}
	}
}

// latin1 folds U+00C0–U+00FF to an ASCII letter (0: not a letter).
const latin1 = "aaaaaaaceeeeiiiidnooooo\x00ouuuuytsaaaaaaaceeeeiiiidnooooo\x00ouuuuyty"

func mix(h uint64, kind uint64) uint64 {
	h ^= kind * 0x9e3779b97f4a7c15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// word accumulates the token being read.
type word struct {
	start, end int
	n          int    // bytes hashed
	h          uint64 // FNV-1a of all bytes
	stem       uint64 // FNV-1a of the first five bytes
	pre, suf   uint32 // first four bytes, last four bytes
}

func (w *word) reset(start int) {
	*w = word{start: start, h: fnvOffset, stem: fnvOffset}
}

func (w *word) add(c byte) {
	w.h = (w.h ^ uint64(c)) * fnvPrime
	if w.n < 5 {
		w.stem = (w.stem ^ uint64(c)) * fnvPrime
	}
	if w.n < 4 {
		w.pre |= uint32(c) << (8 * w.n)
	}
	w.suf = w.suf<<8 | uint32(c)
	w.n++
}

func (w *word) addRune(r rune) {
	if r < utf8.RuneSelf {
		w.add(byte(r))
		return
	}
	var b [utf8.UTFMax]byte
	n := utf8.EncodeRune(b[:], r)
	for _, c := range b[:n] {
		w.add(c)
	}
}

// tokenizer carries the state between words: the previous word's hashes.
type tokenizer struct {
	w               word
	inWord          bool
	prevH, prevStem uint64
	havePrev        bool
	emit            func(*Token)
	tok             Token
}

func (t *tokenizer) flush() {
	if !t.inWord {
		return
	}
	t.inWord = false
	w := &t.w
	if w.n > maxWord {
		w.h, w.stem, w.pre, w.suf, w.n = fnvOffset, fnvOffset, 0xffffffff, 0xffffffff, maxWord+1
	}
	if t.havePrev && w.h == t.prevH {
		return
	}
	tk := &t.tok
	tk.Start, tk.End = w.start, w.end
	tk.F[0] = mix(w.h, 1)
	if t.havePrev {
		tk.F[1] = mix(t.prevH*0x100000001b3^w.h, 2)
		tk.F[4] = mix(t.prevStem*0x100000001b3^w.stem, 5)
	} else {
		tk.F[1] = mix(w.h, 6) // the first word of a text: its own bigram slot
		tk.F[4] = mix(w.stem, 7)
	}
	tk.F[2] = mix(uint64(w.pre)|uint64(min(w.n, 5))<<32, 3)
	tk.F[3] = mix(uint64(w.suf)|uint64(min(w.n, 5))<<32, 4)
	t.prevH, t.prevStem, t.havePrev = w.h, w.stem, true
	t.emit(tk)
}

func (t *tokenizer) begin(i int) {
	if !t.inWord {
		t.w.reset(i)
		t.inWord = true
	}
}

// Tokens calls emit for each token of text in order. The Token passed is
// reused: copy what must outlive the call. It allocates nothing and reads
// each byte once (a rune above ASCII is decoded once).
func Tokens(text []byte, emit func(*Token)) {
	t := tokenizer{emit: emit}
	for i := 0; i < len(text); {
		c := text[i]
		switch class[c] {
		case lower:
			t.begin(i)
			t.w.add(c)
			i++
			t.w.end = i
		case upper:
			t.begin(i)
			t.w.add(c | 0x20)
			i++
			t.w.end = i
		case sep:
			t.flush()
			i++
		default:
			r, size := utf8.DecodeRune(text[i:])
			switch {
			case r == utf8.RuneError && size <= 1:
				t.flush()
			case norm.Ignorable(r) || unicode.Is(unicode.Mn, r):
				// Invisible or combining: part of the word around it.
			case r >= 0xc0 && r <= 0xff && latin1[r-0xc0] != 0:
				t.begin(i)
				t.w.add(latin1[r-0xc0])
				if r == 0xdf { // ß
					t.w.add('s')
				}
				t.w.end = i + size
			case noSpaces(r):
				t.flush()
				t.w.reset(i)
				t.inWord = true
				t.w.addRune(r)
				t.w.end = i + size
				t.flush()
			case unicode.IsLetter(r) || unicode.IsDigit(r):
				t.begin(i)
				t.w.addRune(unicode.ToLower(r))
				t.w.end = i + size
			default:
				t.flush()
			}
			i += size
		}
	}
	t.flush()
}

// noSpaces reports whether r belongs to a script written without spaces
// between words.
func noSpaces(r rune) bool {
	switch {
	case r < 0x0e00:
		return false
	case r <= 0x0e7f: // Thai
		return true
	case r >= 0x3040 && r <= 0x30ff: // Hiragana, Katakana
		return true
	case r >= 0x3400 && r <= 0x9fff, r >= 0xf900 && r <= 0xfaff, r >= 0x20000 && r <= 0x2ffff: // Han
		return true
	}
	return false
}
