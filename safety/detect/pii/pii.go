// Package pii detects personal data in text: e-mail addresses, phone
// numbers, payment card numbers, IBANs, US social security numbers and IP
// addresses. Every detector follows the streaming contract of package
// detect: it reports matches by maximal runs of its own character class,
// decides each run from the run itself plus a few bytes of left context
// (never more than detect.Context), and holds a trailing run for as long as
// more text could still turn it into a match or spoil one.
//
// Runs that start in the released left context are never reported: the
// detector held every run that could still match, so a run reaching back
// into released text is one it had already given up on.
package pii

import (
	"encoding/binary"
	"math/bits"

	"github.com/warden-llm/warden/safety/detect"
)

// Category names, stable across config, audit and output.
const (
	CategoryEmail      = "email"
	CategoryPhone      = "phone"
	CategoryCreditCard = "credit_card"
	CategoryIBAN       = "iban"
	CategorySSN        = "ssn"
	CategoryIP         = "ip"
)

// DefaultRegions are the regions whose national phone formats are accepted
// when a caller does not configure any.
var DefaultRegions = []string{"US", "GB", "DE", "FR", "ES", "IN", "CN", "BR", "JP", "CA", "AU", "NL", "IT"}

// Options configures New.
type Options struct {
	// Regions lists the ISO 3166 region codes whose national phone number
	// formats are recognised; nil means DefaultRegions. Numbers written with
	// a leading + and country code are recognised whatever the regions.
	Regions []string
	// PrivateIPs also reports private, loopback, link-local, CGNAT,
	// documentation and other non-public addresses.
	PrivateIPs bool
}

// New returns the six PII detectors: email, phone, credit_card, iban, ssn
// and ip.
func New(opts Options) []detect.Detector {
	return []detect.Detector{
		NewEmail(),
		NewPhone(opts.Regions),
		NewCreditCard(),
		NewIBAN(),
		NewSSN(),
		NewIP(opts.PrivateIPs),
	}
}

const (
	cDigit = 1 << iota
	cUpper
	cLower
	cWord // letters, digits and '_'
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cWord
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper | cWord
		t[c+'a'-'A'] |= cLower | cWord
	}
	t['_'] |= cWord
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isWord(c byte) bool  { return class[c]&cWord != 0 }

// endOK reports whether a match may end at text[i]: the byte there must not
// continue an ASCII word and must start a rune, so spans stay on rune
// boundaries even in invalid UTF-8.
func endOK(text []byte, i int) bool {
	if i >= len(text) {
		return true
	}
	c := text[i]
	return !isWord(c) && (c < 0x80 || c >= 0xC0)
}

// indexDigit returns the index of the first ASCII digit in b at or after i,
// or -1. It tests eight bytes at a time: most text has few digits.
func indexDigit(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		y := binary.LittleEndian.Uint64(b[i:]) ^ 0x3030303030303030
		// A byte of y is below 10 exactly where b holds a digit; the lowest
		// flagged byte is exact (borrows only spoil the bytes above it).
		if m := (y - 0x0a0a0a0a0a0a0a0a) & ^y & 0x8080808080808080; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if isDigit(b[i]) {
			return i
		}
	}
	return -1
}

func isLetter(c byte) bool { return class[c]&(cUpper|cLower) != 0 }

const (
	lo7 = 0x7f7f7f7f7f7f7f7f
	hi  = 0x8080808080808080
)

// wordMask has the high bit of each byte of x that is an ASCII letter,
// digit or '_'.
func wordMask(x uint64) uint64 {
	y := (x | 0x2020202020202020) & lo7 // fold case
	letters := (y + (0x80-0x61)*0x0101010101010101) & ^(y + (0x80-0x7b)*0x0101010101010101)
	u := (x ^ 0x5f5f5f5f5f5f5f5f) & lo7 // '_' becomes 0
	under := ^((u + lo7) | u) & hi
	return ((letters|under)&^x | detect.DigitMask(x)) & hi
}

// indexWordDigit returns the index of the first ASCII digit at or after i
// that starts a word (the byte before it is not a letter, digit or '_'),
// or -1. Digits inside words (base64, hashes, identifiers) never start a
// candidate of the digit detectors: a candidate whose first digit is glued
// to a word is rejected, and one that continues past the word is found
// again from its first word-starting digit and walked back to its start.
func indexWordDigit(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		d := detect.DigitMask(x)
		if d == 0 {
			continue
		}
		prev := wordMask(x) << 8
		if i > 0 && isWord(b[i-1]) {
			prev |= 0x80
		}
		if m := d &^ prev; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if isDigit(b[i]) && (i == 0 || !isWord(b[i-1])) {
			return i
		}
	}
	return -1
}

// digitSource finds the digits of a text: its own scan (scanned), or the
// filter engine's shared one (*detect.Digits).
type digitSource interface {
	// Next returns the first digit at or after pos, or -1.
	Next(pos int) int
	// NextWord returns the first digit at or after pos that starts a
	// word, or -1.
	NextWord(pos int) int
}

// scanned is a digitSource that scans the text itself.
type scanned []byte

func (t scanned) Next(pos int) int     { return indexDigit(t, pos) }
func (t scanned) NextWord(pos int) int { return indexWordDigit(t, pos) }

// The digit detectors take the engine's shared digit scan.
var (
	_ detect.DigitFinder = CreditCard{}
	_ detect.DigitFinder = SSN{}
	_ detect.DigitFinder = (*Phone)(nil)
	_ detect.DigitFinder = IBAN{}
	_ detect.DigitFinder = IP{}
)

// lower returns c in ASCII lower case.
func lower(c byte) byte {
	if isUpper(c) {
		return c + 'a' - 'A'
	}
	return c
}

// prevWordIn reports whether one of up to n ASCII words (lower-cased, each
// at most 15 bytes) found in the look bytes before text[i], nearest first,
// is in set; it stops at a line break or at a word cut by the edge of the
// look-back. (A set rather than a callback keeps the word buffer off the
// heap.) look must stay below detect.Context (it peeks one byte
// further) so stream and whole-text scans see the same bytes; i must not
// lie in the released context.
func prevWordIn(text []byte, i, look, n int, set wordSet) bool {
	look = min(look, detect.Context-1)
	var buf [16]byte
	lo := max(0, i-look)
	j := i
	for ; n > 0; n-- {
		for j > lo && !isWord(text[j-1]) {
			if text[j-1] == '\n' {
				return false
			}
			j--
		}
		end := j
		for j > lo && isWord(text[j-1]) {
			j--
		}
		if j == end || (j == lo && lo > 0 && isWord(text[lo-1])) || end-j > len(buf) {
			return false
		}
		w := buf[:end-j]
		for k := range w {
			w[k] = lower(text[j+k])
		}
		if set.has(w) {
			return true
		}
	}
	return false
}

// A wordSet is a set of lower-case ASCII words.
type wordSet map[string]bool

func newWordSet(words ...string) wordSet {
	s := wordSet{}
	for _, w := range words {
		s[w] = true
	}
	return s
}

func (s wordSet) has(w []byte) bool { return s[string(w)] }
