// Package encoded finds base64 and hex runs that decode to text, decodes
// them and scans the decoded text with other detectors, so that a secret or
// an injection phrase cannot slip through a filter by being encoded. Runs
// that decode to binary (images, compressed data, digests) are ignored.
package encoded

import (
	"bytes"
	"compress/gzip"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// Category is the policy name of an encoded run in which the inner
// detectors found nothing.
const Category = "encoded"

const (
	// minBase64 and minHex are the shortest runs considered: 18 and 16
	// decoded bytes.
	minBase64, minHex = 24, 32
	// maxRun is the longest run considered. A stream cannot hold more than
	// detect.MaxHold, so longer runs (with their padding) are never
	// reported, in a stream or in whole text alike.
	maxRun = detect.MaxHold - 2
	// minPrintable is the share of printable runes decoded text must have.
	minPrintable = 0.85
)

// run marks the characters of a base64 run, standard and URL alphabets
// together; hex digits are a subset.
var run = func() (t [256]bool) {
	for _, r := range [][2]byte{{'A', 'Z'}, {'a', 'z'}, {'0', '9'}} {
		for b := r[0]; b <= r[1]; b++ {
			t[b] = true
		}
	}
	t['+'], t['/'], t['-'], t['_'] = true, true, true, true
	return t
}()

var bufs = sync.Pool{New: func() any { b := make([]byte, maxRun); return &b }}

type detector struct {
	inner []detect.Detector
	// cache remembers the verdicts on recent runs that decode to text,
	// direct-mapped by a hash of the run. Chat requests resend the whole
	// conversation, so the same payload comes back again and again, and
	// decoding it and scanning it with the inner detectors costs far more
	// than finding it. Entries are replaced whole, so concurrent scans
	// need no lock.
	cache   [cacheSize]atomic.Pointer[verdict]
	seed    maphash.Seed
	noCache bool // for tests
}

// cacheSize is the number of cached verdicts; maxCached the longest run
// cached.
const cacheSize, maxCached = 256, 1024

// A verdict is what decode said about one run at depth 1.
type verdict struct {
	run []byte
	m   detect.Match
	ok  bool
}

// New returns the encoded payload detector. inner are the detectors run
// over decoded text, in order of precedence: a run is reported once, under
// the category of the first inner detector that finds something in it,
// with Detector "base64>" or "hex>" followed by that detector's name; when
// none does, under Category with Detector "base64" or "hex". The decoded
// text is searched for encoded runs once more (two levels in all), giving
// names like "base64>hex>aws-access-key".
//
// A run is a maximal run of [A-Za-z0-9+/_-], with up to two '=' of
// padding; it is hex when it is all hex digits, of even length and at
// least 32 long, else base64 (one alphabet, at least 24 long). Runs are
// joined across line breaks when they make a wrapped block (lines of one
// length, at least 40 and a multiple of four, as base64 is wrapped at 64
// or 76 columns). A UUID is never a run worth decoding.
func New(inner []detect.Detector) detect.Detector {
	return &detector{inner: inner, seed: maphash.MakeSeed()}
}

func (d *detector) Category() string { return Category }

func (d *detector) Find(text []byte, from int, report func(detect.Match)) {
	i := from
	if i > 0 && run[text[i-1]] {
		// The run at from began in the context: it was too long to
		// hold, or it was seen whole before.
		for i < len(text) && run[text[i]] {
			i++
		}
	}
	runs(text, i, func(s, e, pad int) {
		// A run followed by a stray continuation byte (invalid UTF-8)
		// cannot end a match on a rune boundary.
		if end := e + pad; end < len(text) && !utf8.RuneStart(text[end]) {
			return
		}
		if m, ok := d.decodeCached(text[s:e]); ok {
			m.Start, m.End = s, e+pad
			report(m)
		}
	})
}

// Hold keeps the trailing run and its padding unless the run is already
// too long to report, and a wrapped block that may still go on.
func (d *detector) Hold(text []byte) int {
	return max(holdRun(text), holdBlock(text))
}

func holdRun(text []byte) int {
	n := len(text)
	e := n
	for e > 0 && n-e < 3 && text[e-1] == '=' {
		e--
	}
	if e == n-3 {
		return 0
	}
	s := e
	for s > 0 && e-s <= maxRun && run[text[s-1]] {
		s--
	}
	if e-s > maxRun || s == e {
		return 0
	}
	return n - s
}

// runs calls fn for each run in text starting at or after i (where i is
// the start of a run or not in one) that is long enough to decode and not
// too long: [s, e) is the run, pad the '=' padding after it. Stretches
// that cannot hold a run that long are skipped eight bytes at a time
// (skipShort).
func runs(text []byte, i int, fn func(s, e, pad int)) {
	n := len(text)
	for i < n {
		i = skipShort(text, i)
		e := runEnd(text, i)
		if e-i < minBase64 {
			i = e + 1
			continue
		}
		e = wrapEnd(text, i, e)
		if e-i <= maxRun {
			fn(i, e, padding(text, e))
		}
		i = e + 1
	}
}

// padding is the length of the base64 padding ('=' or "==") at text[e:]
// after a run ending at e, or 0 when the '=' there are not padding (more
// than two, or a run byte right after them).
func padding(text []byte, e int) int {
	n := len(text)
	eq := 0
	for e+eq < n && text[e+eq] == '=' {
		eq++
	}
	if eq > 2 || e+eq < n && run[text[e+eq]] {
		return 0
	}
	return eq
}

// Wrapped base64: a block of lines of one length (at least minWrap and a
// multiple of four, as MIME and PEM wrap at 64 or 76 columns), each a
// whole run starting a line, the last line no longer than the others,
// decodes as one run with the line breaks ("\n" or "\r\n") left out.
const minWrap = 40

// lineStart reports whether i starts a line.
func lineStart(text []byte, i int) bool { return i == 0 || text[i-1] == '\n' }

// newline returns the length of the line break at text[i], or 0.
func newline(text []byte, i int) int {
	switch {
	case i < len(text) && text[i] == '\n':
		return 1
	case i+1 < len(text) && text[i] == '\r' && text[i+1] == '\n':
		return 2
	}
	return 0
}

// wrapEnd returns the end of the wrapped block whose first line is the run
// text[i:e], or e when that run does not start one.
func wrapEnd(text []byte, i, e int) int {
	l := e - i
	if l < minWrap || l%4 != 0 || !lineStart(text, i) {
		return e
	}
	end := e
	for end-i <= maxRun {
		nl := newline(text, end)
		if nl == 0 {
			break
		}
		s := end + nl
		k := s
		for k < len(text) && k-s <= l && run[text[k]] {
			k++
		}
		if k == s || k-s > l {
			break
		}
		end = k
		if k-s < l {
			break // the last, shorter line
		}
	}
	return end
}

// holdBlock keeps a trailing wrapped block that may still go on: its lines
// so far, while the line being written is no longer than they are.
func holdBlock(text []byte) int {
	n := len(text)
	t := n
	if t > 0 && text[t-1] == '\r' {
		t-- // a line break under way
	}
	for k := 0; k < 2 && t > 0 && text[t-1] == '='; k++ {
		t--
	}
	j := t
	for j > 0 && t-j <= maxRun && run[text[j-1]] {
		j--
	}
	// j starts the line being written (or t, with none yet); the line
	// before it must be a first or middle line of a block.
	var k int
	switch {
	case t < n && text[t] == '\r' && j < t:
		k = t // the line just ended, with '\r'
		j = n
	case j == 0 || text[j-1] != '\n':
		return 0
	default:
		k = j - 1
		if k > 0 && text[k-1] == '\r' {
			k--
		}
	}
	s := k
	for s > 0 && k-s <= maxRun && run[text[s-1]] {
		s--
	}
	l := k - s
	if l < minWrap || l%4 != 0 || !lineStart(text, s) || t-j > l {
		return 0
	}
	start := s
	for start > 0 && n-start <= maxRun {
		e := start - 1
		if e > 0 && text[e-1] == '\r' {
			e--
		}
		p := e
		for p > 0 && e-p <= l && run[text[p-1]] {
			p--
		}
		if e-p != l || !lineStart(text, p) {
			break
		}
		start = p
	}
	if n-start > detect.MaxHold {
		return 0
	}
	return n - start
}

// unwrap returns r without its line breaks, in buf when it has any.
func unwrap(r, buf []byte) []byte {
	if bytes.IndexByte(r, '\n') < 0 {
		return r
	}
	out := buf[:0]
	for _, c := range r {
		if c != '\n' && c != '\r' {
			out = append(out, c)
		}
	}
	return out
}

// decodeCached is decode at depth 1, through the cache.
func (d *detector) decodeCached(r []byte) (detect.Match, bool) {
	if len(r) > maxCached || d.noCache {
		return d.decode(r, 1)
	}
	slot := &d.cache[maphash.Bytes(d.seed, r)%cacheSize]
	if v := slot.Load(); v != nil && bytes.Equal(v.run, r) {
		return v.m, v.ok
	}
	m, ok := d.decode(r, 1)
	if ok {
		// Binary runs are mostly rejected before decoding; caching
		// them would only churn the cache.
		slot.Store(&verdict{run: bytes.Clone(r), m: m, ok: ok})
	}
	return m, ok
}

// decode decodes a run and scans it; ok is false when it is not an
// encoding of text.
func (d *detector) decode(r []byte, depth int) (m detect.Match, ok bool) {
	wrapped := bytes.IndexByte(r, '\n') >= 0
	if !wrapped && !bytes.HasPrefix(r, []byte("H4sI")) && !isBase32(r) && binaryStart(r) {
		return m, false // as decodeRun would say, without taking buffers
	}
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	if wrapped {
		up := bufs.Get().(*[]byte)
		defer bufs.Put(up)
		r = unwrap(r, *up)
	}
	out, kind, ok := decodeRun(r, *bp)
	if !ok {
		return m, false
	}
	if !printable(out) {
		return m, false
	}
	m = detect.Match{Category: Category, Detector: kind}
	if inner, ok := d.scan(out, depth); ok {
		m.Category, m.Detector = inner.Category, kind+">"+inner.Detector
	}
	return m, true
}

// decodeRun decodes a run into buf (maxRun bytes): gzip in base64 (it
// starts "H4sI"), base32 (upper-case letters and 2–7 only, when that
// decodes to text), hex, base64. ok is false when it does not decode, or
// certainly not to text.
func decodeRun(r, buf []byte) (out []byte, kind string, ok bool) {
	if bytes.HasPrefix(r, []byte("H4sI")) {
		return gunzip(r, buf)
	}
	if isBase32(r) {
		if n, err := base32Raw.Decode(buf, r); err == nil && printable(buf[:n]) {
			return buf[:n], "base32", true
		}
	}
	if binaryStart(r) {
		return nil, "", false
	}
	switch {
	case len(r) >= minHex && len(r)%2 == 0 && isHex(r):
		n, err := hex.Decode(buf, r)
		if err != nil {
			return nil, "", false
		}
		return buf[:n], "hex", true
	case detect.IsUUID(r):
		return nil, "", false
	}
	enc, ok := base64Of(r)
	if !ok {
		return nil, "", false
	}
	n, err := enc.Decode(buf, r)
	if err != nil {
		return nil, "", false
	}
	return buf[:n], "base64", true
}

// base64Of picks the alphabet of a base64 run; a run mixing both is none.
func base64Of(r []byte) (*base64.Encoding, bool) {
	var std, url bool
	for _, c := range r {
		std = std || c == '+' || c == '/'
		url = url || c == '-' || c == '_'
	}
	switch {
	case std && url:
		return nil, false
	case url:
		return base64.RawURLEncoding, true
	}
	return base64.RawStdEncoding, true
}

var base32Raw = base32.StdEncoding.WithPadding(base32.NoPadding)

// isBase32 reports whether a run is in the base32 alphabet, of a length
// base32 can have.
func isBase32(r []byte) bool {
	switch len(r) % 8 {
	case 1, 3, 6:
		return false
	}
	for _, c := range r {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// gunzip decodes a base64 run holding gzip data and inflates it into buf,
// at most len(buf) bytes (a longer text is cut there: a bomb costs no more
// than a run its size).
func gunzip(r, buf []byte) ([]byte, string, bool) {
	enc, ok := base64Of(r)
	if !ok {
		return nil, "", false
	}
	raw := make([]byte, enc.DecodedLen(len(r)))
	n, err := enc.Decode(raw, r)
	if err != nil {
		return nil, "", false
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw[:n]))
	if err != nil {
		return nil, "", false
	}
	k, err := io.ReadFull(zr, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		if k == 0 {
			return nil, "", false
		}
	}
	return buf[:k], "base64+gzip", k > 0
}

// scan runs the inner detectors over decoded text and then, below the
// depth limit, decodes the runs inside it; it returns the first finding.
func (d *detector) scan(text []byte, depth int) (detect.Match, bool) {
	// The inner detectors read the decoded text as the filter's detectors
	// read any text: through its literal view (only the first finding's
	// names are kept, so no offsets need mapping back).
	if !norm.Plain(text) {
		text, _ = norm.LiteralMap(nil, nil, text, false)
	}
	for _, in := range d.inner {
		var first detect.Match
		found := false
		in.Find(text, 0, func(m detect.Match) {
			if !found {
				first, found = m, true
			}
		})
		if found {
			return first, true
		}
	}
	if depth >= 2 {
		return detect.Match{}, false
	}
	var (
		first detect.Match
		found bool
	)
	runs(text, 0, func(s, e, _ int) {
		if found {
			return
		}
		if m, ok := d.decode(text[s:e], depth+1); ok && m.Category != Category {
			first, found = m, true
		}
	})
	return first, found
}

// binaryStart decodes the first 32 characters of a run and reports whether
// they are certainly not UTF-8 (a rune error with four or more bytes after
// it cannot be a rune cut short). Images, compressed data and digests
// mostly fail here, before the whole run is decoded.
func binaryStart(r []byte) bool {
	var buf [24]byte
	var out []byte
	if len(r) >= minHex && len(r)%2 == 0 && isHex(r) {
		n, _ := hex.Decode(buf[:], r[:32])
		out = buf[:n]
	} else {
		p := r[:min(len(r), 32)&^3]
		enc := base64.RawStdEncoding
		if bytes.ContainsAny(p, "-_") {
			enc = base64.RawURLEncoding
		}
		n, err := enc.Decode(buf[:], p)
		if err != nil {
			return false
		}
		out = buf[:n]
	}
	for i := 0; i < len(out); {
		c, size := utf8.DecodeRune(out[i:])
		if c == utf8.RuneError && size == 1 {
			return len(out)-i >= 4
		}
		i += size
	}
	return false
}

func isHex(b []byte) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if nonHex(binary.LittleEndian.Uint64(b[i:])) != 0 {
			return false
		}
	}
	for _, c := range b[i:] {
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f') {
			return false
		}
	}
	return true
}

// printable reports whether b is valid UTF-8 made mostly of printable
// runes (tab, newline and carriage return count as printable).
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	total, ok := 0, 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			total++
			if c >= 0x20 && c < 0x7F || c == '\t' || c == '\n' || c == '\r' {
				ok++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		total++
		if unicode.IsPrint(r) {
			ok++
		}
		i += size
	}
	return total > 0 && float64(ok) >= minPrintable*float64(total)
}
