package classifier

import (
	"encoding/binary"
	"math/bits"
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

// Hash constants: a word is hashed FNV-style, eight bytes per multiply,
// and each feature is mixed by its kind (see mix).
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

// mix spreads h over the top bits (the table index) with one multiply,
// after setting it apart by the feature's kind.
func mix(h uint64, kind uint64) uint64 {
	return (h ^ kind*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
}

// word accumulates the token being read: its bytes go into acc eight at
// a time, and each full acc is folded into h with one multiply.
type word struct {
	start, end int
	n          int    // bytes read
	acc        uint64 // the bytes since the last full eight, big-endian
	h          uint64 // hash of the full eights
	first      uint64 // the first eight bytes, once there are eight
	last       uint64 // the last full eight
}

func (w *word) reset(start int) { *w = word{start: start, h: fnvOffset} }

func (w *word) add(c byte) {
	w.acc = w.acc<<8 | uint64(c)
	if w.n++; w.n&7 == 0 {
		w.fold()
	}
}

// fold takes a full acc into the hash.
func (w *word) fold() {
	w.h = (w.h ^ w.acc) * fnvPrime
	if w.n == 8 {
		w.first = w.acc
	}
	w.last, w.acc = w.acc, 0
}

// sums returns the word's hash, its first five bytes (the stem), its first
// four and its last four.
func (w *word) sums() (h, stem uint64, pre, suf uint32) {
	k := uint(w.n & 7)
	h = (w.h ^ w.acc ^ uint64(w.n)<<56) * fnvPrime
	head, hn := w.first, uint(8)
	if w.n < 8 {
		head, hn = w.acc, uint(w.n)
	}
	// head holds the first hn bytes, the first one highest.
	stem = head >> (8 * (hn - min(hn, 5)))
	pre = uint32(head >> (8 * (hn - min(hn, 4))))
	tail := w.acc
	if k < 4 && w.n >= 8 {
		tail |= w.last << (8 * k)
	}
	suf = uint32(tail)
	return
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
	sc              *scorer // when set, tokens go to it rather than to emit
	bytewise        bool    // read ASCII words a byte at a time (a test's reference)
	tok             Token
}

func (t *tokenizer) flush() {
	if !t.inWord {
		return
	}
	t.inWord = false
	w := &t.w
	if sc := t.sc; sc != nil && w.n > 0 && w.n <= 8 {
		t.scoreShort(sc)
		return
	}
	h, stem, pre, suf := w.sums()
	n := uint64(min(w.n, 5))
	if w.n > maxWord {
		h, stem, pre, suf, n = fnvOffset, fnvOffset, 0xffffffff, 0xffffffff, 6
	}
	if t.havePrev && h == t.prevH {
		return
	}
	tk := &t.tok
	tk.Start, tk.End = w.start, w.end
	tk.F[0] = mix(h, 1)
	if t.havePrev {
		tk.F[1] = mix(t.prevH*0x100000001b3^h, 2)
		tk.F[4] = mix(t.prevStem*0x100000001b3^stem, 5)
	} else {
		tk.F[1] = mix(h, 6) // the first word of a text: its own bigram slot
		tk.F[4] = mix(stem, 7)
	}
	tk.F[2] = mix(uint64(pre)|n<<32, 3)
	tk.F[3] = mix(uint64(suf)|n<<32, 4)
	t.prevH, t.prevStem, t.havePrev = h, stem, true
	if sc := t.sc; sc != nil {
		m := sc.m
		var c int32
		for _, f := range tk.F {
			c += int32(m.W[m.Index(f)])
		}
		sc.add(c, tk.Start, tk.End)
	} else {
		t.emit(tk)
	}
}

// scoreShort is flush for the scorer and a word of at most eight bytes,
// which its bytes determine: the features of the word alone (its hash,
// stem and the table sum of its unigram and edges) come from the scorer's
// cache of recent words, and only the bigrams are looked up. The sum is
// the one flush would give.
func (t *tokenizer) scoreShort(sc *scorer) {
	w := &t.w
	// The word's bytes, none of them zero, with its length in the top
	// byte when that is free: unique per word.
	key := w.acc | uint64(w.n)<<56
	if w.n == 8 {
		key = w.first
	}
	m := sc.m
	e := &sc.cache.e[(key*0x9e3779b97f4a7c15)>>(64-cacheBits)]
	if e.key != key {
		h, stem, pre, suf := w.sums()
		n := uint64(min(w.n, 5))
		c := int32(m.W[m.Index(mix(h, 1))]) + int32(m.W[m.Index(mix(uint64(pre)|n<<32, 3))]) + int32(m.W[m.Index(mix(uint64(suf)|n<<32, 4))])
		*e = cacheEntry{key: key, h: h, stem: stem, c: c}
	}
	h, stem := e.h, e.stem
	c := e.c
	if t.havePrev {
		if h == t.prevH {
			return
		}
		c += int32(m.W[m.Index(mix(t.prevH*0x100000001b3^h, 2))]) + int32(m.W[m.Index(mix(t.prevStem*0x100000001b3^stem, 5))])
	} else {
		c += int32(m.W[m.Index(mix(h, 6))]) + int32(m.W[m.Index(mix(stem, 7))])
	}
	t.prevH, t.prevStem, t.havePrev = h, stem, true
	sc.add(c, w.start, w.end)
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
	t.run(text)
}

func (t *tokenizer) run(text []byte) {
	for i := 0; i < len(text); {
		c := text[i]
		switch k := class[c]; k {
		case lower, upper:
			// The common case, a run of ASCII letters and digits, with the
			// word's state in registers: what word.add does, byte by byte.
			t.begin(i)
			w := &t.w
			acc, n := w.acc, w.n
			// Eight bytes at a time while they last: the run's length in
			// them, and its bytes lower-cased (x|0x20 is the same on a
			// digit) and in reading order, appended to acc.
			ended := false
			for !t.bytewise && i+8 <= len(text) {
				x := binary.LittleEndian.Uint64(text[i:])
				cnt := alnumPrefix(x)
				b := bits.ReverseBytes64(x|0x2020202020202020) >> (8 * (8 - cnt))
				if r := uint(n & 7); r+cnt < 8 {
					acc = acc<<(8*cnt) | b
				} else {
					k := r + cnt - 8 // bytes past the full eight
					w.acc, w.n = acc<<(8*(8-r))|b>>(8*k), n+int(8-r)
					w.fold()
					acc = b & (1<<(8*k) - 1)
				}
				n += int(cnt)
				i += int(cnt)
				if cnt < 8 {
					ended = true
					break
				}
			}
			for !ended && i < len(text) {
				c := text[i]
				k := class[c]
				if k != lower && k != upper {
					break
				}
				acc = acc<<8 | uint64(c|(k-lower)<<5) // upper: set the 0x20 bit
				if n++; n&7 == 0 {
					w.acc, w.n = acc, n
					w.fold()
					acc = 0
				}
				i++
			}
			w.acc, w.n, w.end = acc, n, i
		case sep:
			if t.inWord {
				t.flush()
			}
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

// alnumPrefix is how many of x's bytes, from the lowest (the first in
// the text), are ASCII letters or digits.
func alnumPrefix(x uint64) uint {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	v := x &^ highs
	l := v | 0x20*ones // a letter of either case as a lower-case one
	// A byte v of 7 bits is in [lo, hi] when v+0x80-lo has the top bit
	// and v+0x7f-hi has not; neither sum carries into the next byte.
	digit := (v + (0x80-'0')*ones) &^ (v + (0x7f-'9')*ones)
	letter := (l + (0x80-'a')*ones) &^ (l + (0x7f-'z')*ones)
	not := ^((digit | letter) &^ x) & highs
	return uint(bits.TrailingZeros64(not)) / 8
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
