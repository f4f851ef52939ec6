package detect

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"

	"github.com/warden-llm/warden/safety/detect/blockmask"
)

// Digits is the shared digit scan of one text: where each run of ASCII
// digits starts, and whether that start also starts a word (the byte
// before it is not an ASCII letter, digit or '_'). The filter engine scans
// a text for digits once and hands the result to every DigitFinder, so
// the digit-based detectors (credit_card, ssn, phone, iban, ip) do not
// each look for digits through the whole text.
//
// Next and NextWord answer in any order, fastest for positions that grow;
// they move a cursor, so a Digits serves one detector at a time.
type Digits struct {
	text []byte
	// starts holds the offsets of digit-run starts in ascending order,
	// words those of them that begin a word.
	starts, words []int
	// Cursors: starts[:at] and words[:wat] lie before the last position
	// asked for.
	at, wat int
}

// A DigitFinder is a Detector whose every match holds an ASCII digit.
// FindDigits is Find with the text's digit scan done: digits was built by
// Scan over the same text. Find and FindDigits report the same matches.
type DigitFinder interface {
	Detector
	FindDigits(text []byte, from int, digits *Digits, report func(Match))
}

const (
	lo7 = 0x7f7f7f7f7f7f7f7f
	hi  = 0x8080808080808080
)

// DigitMask has the high bit of each byte of x that is an ASCII digit
// (the detectors' eight-bytes-at-a-time scans share it).
func DigitMask(x uint64) uint64 {
	t := x ^ 0x3030303030303030 // digits become 0..9
	return ^((t & lo7) + 0x7676767676767676 | t) & hi
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isWord(c byte) bool {
	return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '_'
}

// pack gathers the high bits of the eight bytes of m into one byte, bit
// k from byte k.
func pack(m uint64) uint64 { return (m >> 7) * 0x0102040810204080 >> 56 }

// Scan records the digit runs of text, reusing d's memory.
func (d *Digits) Scan(text []byte) {
	d.text = text
	d.at, d.wat = 0, 0
	st, ws := d.starts[:0], d.words[:0]
	var prev uint64 // 0x80 when the byte before the block is a digit
	i := 0
	if len(text) >= 64 && isDigit(text[0]) {
		// The one run start with no byte before it.
		st, ws = append(st, 0), append(ws, 0)
	}
	var sets [32]uint64 // the run starts of up to 32 blocks, a bit set each
	for i+64 <= len(text) {
		// The run starts of 64 bytes as a bit set, from blockmask's
		// digit masks or eight bytes at a time, then each start
		// recorded without a branch of its own.
		nb := 1
		if vector {
			nb = digitMask.Scan(text[i:], sets[:])
			for k, dm := range sets[:nb] {
				sets[k] = dm &^ (dm<<1 | prev>>7)
				prev = dm >> 63 << 7
			}
		} else {
			b := text[i : i+64 : i+64]
			var set uint64
			for k := 0; k < 64; k += 8 {
				dm := DigitMask(binary.LittleEndian.Uint64(b[k : k+8]))
				set |= pack(dm&^(dm<<8|prev)) << k
				prev = dm >> 56 & 0x80
			}
			sets[0] = set
		}
		if i == 0 {
			sets[0] &^= 1 // recorded above
		}
		for _, set := range sets[:nb] {
			if set == 0 {
				i += 64
				continue
			}
			ns, nw := len(st), len(ws)
			if cap(st)-ns < 64 {
				st = slices.Grow(st, 64+ns/4)
			}
			if cap(ws)-nw < 64 {
				ws = slices.Grow(ws, 64+nw/4)
			}
			st, ws = st[:ns+64], ws[:nw+64]
			for set != 0 {
				k := i + bits.TrailingZeros64(set)
				set &= set - 1
				st[ns] = k
				ns++
				ws[nw] = k
				nw += int(wordStart[text[k-1]])
			}
			st, ws = st[:ns], ws[:nw]
			i += 64
		}
	}
	d.starts, d.words = st, ws
	for ; i < len(text); i++ {
		if isDigit(text[i]) && (i == 0 || !isDigit(text[i-1])) {
			d.add(text, i)
		}
	}
}

// digitMask is isDigit's blockmask table.
var digitMask = blockmask.MustNew(isDigit)

// wordStart is 1 for the bytes after which a digit starts a word.
var wordStart = func() (t [256]uint8) {
	for c := range 256 {
		if !isWord(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// add records a digit run starting at k.
func (d *Digits) add(text []byte, k int) {
	d.starts = append(d.starts, k)
	if k == 0 || !wordByte[text[k-1]] {
		d.words = append(d.words, k)
	}
}

var wordByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isWord(byte(c))
	}
	return t
}()

// Cap is how many digit runs d has room for without growing.
func (d *Digits) Cap() int { return cap(d.starts) + cap(d.words) }

// seek moves the cursor *at over s to the first element at or after
// pos: forward by steps, as the detectors ask, or back by binary search.
func seek(s []int, at *int, pos int) {
	i := *at
	if i > 0 && s[i-1] >= pos {
		i = sort.SearchInts(s, pos)
	}
	for i < len(s) && s[i] < pos {
		i++
	}
	*at = i
}

// Next returns the offset of the first ASCII digit at or after pos, or -1.
func (d *Digits) Next(pos int) int {
	pos = max(pos, 0)
	if pos < len(d.text) && isDigit(d.text[pos]) {
		return pos
	}
	seek(d.starts, &d.at, pos)
	if d.at == len(d.starts) {
		return -1
	}
	return d.starts[d.at]
}

// NextWord returns the offset of the first ASCII digit at or after pos
// that starts a word, or -1.
func (d *Digits) NextWord(pos int) int {
	seek(d.words, &d.wat, pos)
	if d.wat == len(d.words) {
		return -1
	}
	return d.words[d.wat]
}
