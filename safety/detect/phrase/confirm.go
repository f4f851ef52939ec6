package phrase

import "github.com/warden-llm/warden/safety/detect/norm"

// startsAt reports whether a start token may begin at the ASCII word or
// marker byte text[c] in the view. It reads the view straight off the
// raw bytes (asciiReader) where it can, and builds a small view
// otherwise; when it cannot tell, it says yes.
func (d *injectionDetector) startsAt(text []byte, c int, v *view) bool {
	if c > 0 && text[c-1] == text[c] {
		return d.startsAtView(text, c, v) // inside a run of punctuation
	}
	a := d.a
	r := asciiReader{text: text, i: c}
	defer func() { v.spent += r.i - c }()
	var st uint32
	for k := 1; ; k++ {
		b, ok := r.next()
		if !ok {
			return r.i < len(text) // non-ASCII: cannot tell
		}
		st = a.step(st, b)
		if int(a.depth[st]) < k {
			return false // no token starting at c goes on
		}
		for _, pi := range a.outs[st] {
			t := &d.toks[pi]
			if int(a.plen[pi]) != k || !isStart(t.class) {
				continue
			}
			// The left boundary holds: c starts a word or is
			// punctuation. After the token comes a byte the view
			// keeps as it is, unless it is a space or punctuation
			// (not a word byte either way) or non-ASCII.
			if j := r.i; !t.right || j == len(text) || text[j] >= 0x80 || !isAlnum(text[j]) {
				return true
			}
		}
	}
}

// asciiReader reads the view of ASCII text from a cut, one byte at a time,
// by the rules of norm.Normalize for ASCII: letters in lower case, the leet
// digits read as letters next to a letter, a run of white space and
// control bytes as one space, a run of one punctuation byte cut to three.
// TestASCIIReader holds it to norm.Normalize.
type asciiReader struct {
	text []byte
	i    int
	last byte
	run  int
}

// next returns the next byte of the view, or ok false at the end of text
// or at a non-ASCII byte.
func (r *asciiReader) next() (byte, bool) {
	for r.i < len(r.text) {
		c := r.text[r.i]
		r.i++
		switch {
		case c >= 0x80:
			r.i--
			return 0, false
		case c|0x20 >= 'a' && c|0x20 <= 'z':
			c |= 0x20
		case c >= '0' && c <= '9':
			if l := leetDigit[c-'0']; l != 0 && (isLetter(r.last) || r.i < len(r.text) && isLetter(r.text[r.i])) {
				c = l
			}
		case isSpace(c):
			if r.last == ' ' {
				continue
			}
			c = ' '
		default:
			if c == r.last {
				if r.run >= 3 {
					continue
				}
				r.run++
			} else {
				r.run = 1
			}
		}
		r.last = c
		return c, true
	}
	return 0, false
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// leetDigit is the view's reading of the leet digits, from norm itself.
var leetDigit = func() (t [10]byte) {
	for c := byte('0'); c <= '9'; c++ {
		t[c-'0'] = leetOf(c)
	}
	return t
}()

// runStarts reports whether a start token may begin in the view of the
// non-ASCII run text[i:j], the words glued to it, the text from the cut
// before it, and the runs that follow closely (with their words and the
// text between), all read from one small view; when it cannot tell, it
// says yes. k is where the runs it judged end.
func (d *injectionDetector) runStarts(text []byte, i, j int, v *view) (k int, yes bool) {
	k = j
	for k < len(text) && isAlnum(text[k]) {
		k++ // a word glued to the run
	}
	s := cutBefore(text, i, max(0, i-maxCutBack))
	if s < 0 {
		v.spent += maxCutBack
		return k, true
	}
	limit := 4*d.maxLen + maxCutBack
	var e int
	for {
		e = viewEnd(text, k, d.maxLen+2, limit)
		if e < 0 {
			return k, true
		}
		// Take in the next run if the small view reaches it.
		r := k
		for r < e && text[r] < 0x80 {
			r++
		}
		if r == e || e-i > 8*limit {
			break
		}
		for k = r; k < len(text) && (text[k] >= 0x80 || isAlnum(text[k])); k++ {
		}
	}
	v.dst, v.offs = norm.Normalize(v.dst, v.offs, text[s:e])
	v.spent += e - s
	a := d.a
	found := false
	a.scan(v.dst, func(end int, st uint32) {
		for _, pi := range a.outs[st] {
			ns, t := end-int(a.plen[pi]), &d.toks[pi]
			if found || !isStart(t.class) || int(v.offs[ns]) > k-s ||
				t.left && v.wordBefore(ns) || t.right && v.wordAt(end) {
				continue
			}
			found = true
		}
	})
	return k, found
}

// startsAtView is startsAt on a small view built around c.
func (d *injectionDetector) startsAtView(text []byte, c int, v *view) bool {
	s := cutBefore(text, c, max(0, c-maxCutBack))
	if s < 0 {
		v.spent += maxCutBack
		return true // in a long word or run: take it
	}
	e := viewEnd(text, c, d.maxLen+2, 4*d.maxLen+maxCutBack)
	if e < 0 {
		return true // a long stretch that gives little view: take it
	}
	v.dst, v.offs = norm.Normalize(v.dst, v.offs, text[s:e])
	v.spent += e - s
	vc := -1
	for k, o := range v.offs {
		if int(o) == c-s {
			vc = k
			break
		}
		if int(o) > c-s {
			break
		}
	}
	if vc < 0 {
		return false // the byte at c left no trace in the view
	}
	a, dst := d.a, v.dst
	var st uint32
	for i := vc; i < len(dst); i++ {
		st = a.step(st, dst[i])
		if int(a.depth[st]) < i+1-vc {
			return false // no token starting at c goes on
		}
		for _, pi := range a.outs[st] {
			if int(a.plen[pi]) != i+1-vc {
				continue
			}
			t := &d.toks[pi]
			if !isStart(t.class) || t.left && v.wordBefore(vc) || t.right && v.wordAt(i+1) {
				continue
			}
			return true
		}
	}
	return true // still open at the end of the small view
}
