package phrase

import (
	"bytes"
	"slices"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// maxGap bounds the bytes of the view between two tokens of one phrase, and
// maxFillers the filler words there.
const (
	maxGap     = 64
	maxCJKGap  = 24
	maxFillers = 5
)

// NewInjection returns the prompt-injection detector (category
// "injection"). It matches a phrase grammar over the normalized view of the
// text (see package norm), so words split by zero-width characters, spelled
// in tag characters, fullwidth or mathematical letters, Cyrillic
// look-alikes or leet digits are read as plain words; matches are reported
// on the original bytes. Detectors:
//   - "override": a verb (ignore, disregard, forget, override, bypass, skip,
//     ignoriere, vergiss, oublie, ignora, olvida, 忽略...), up to five
//     filler words (all, the, your, of...), an object (instructions, rules,
//     prompt, guidelines, Anweisungen, consignes, instrucciones, 指令...);
//     the fillers, or a qualifier right after the object (French and
//     Spanish: "les instructions précédentes"), must make it about the
//     model's own rules: all/any/your, previous/above/prior/system... A
//     plain "follow the instructions in the README" or "ignore case" does
//     not match. Also fixed phrases: "ignore the above and",
//     "new instructions:".
//   - "persona": "you are now", "act as", "pretend to be", "du bist jetzt",
//     "ahora eres", "你现在是"... followed by an unrestricted role
//     (unrestricted, uncensored, DAN, "with no restrictions", 没有任何限制).
//   - "prompt_leak": reveal/print/show/repeat... your (or the hidden,
//     initial, original) system prompt/instructions; "what is your system
//     prompt"; "repeat the words above".
//   - "jailbreak": "do anything now", "DAN mode", "developer mode enabled",
//     "jailbreak mode"...
//   - "role_marker": chat-template markers (<|im_start|>, [INST], <<SYS>>,
//     </system>, <|start_header_id|>, <start_of_turn>...) anywhere, and
//     "### System:" / "### Instruction:" at the start of a line.
func NewInjection() detect.Detector { return injection }

var injection = newInjection()

type injectionDetector struct {
	a      *automaton
	toks   []tokInfo
	maxLen int
	pre    *prefilter
	pats   [][]byte // the tokens as the view reads them
}

type tokInfo struct {
	class       int
	name        string
	left, right bool // needs a word boundary on that side
	lineStart   bool
}

func newInjection() *injectionDetector {
	d := &injectionDetector{}
	index := map[string]int{}
	var pats [][]byte
	add := func(text string, e entry) {
		v, _ := norm.Normalize(nil, nil, []byte(text))
		v = bytes.TrimSpace(v)
		key := string(v)
		i, ok := index[key]
		if !ok {
			i = len(d.toks)
			index[key] = i
			pats = append(pats, v)
			first, _ := utf8.DecodeRune(v)
			last, _ := utf8.DecodeLastRune(v)
			d.toks = append(d.toks, tokInfo{
				left:  e.class&(tMarker|tCJK) == 0 && wordRune(first),
				right: e.class&(tMarker|tCJK) == 0 && wordRune(last),
			})
			d.maxLen = max(d.maxLen, len(v))
		}
		t := &d.toks[i]
		t.class |= e.class
		t.lineStart = t.lineStart || e.class&tLine != 0
		if t.name == "" || e.class&(tPhrase|tMarker) != 0 {
			t.name = e.name
		}
	}
	for _, e := range tokens {
		if e.class&tMarker == 0 && isASCIIWord(e.text) {
			for _, w := range leetVariants(e.text) {
				add(w, e)
			}
			continue
		}
		add(e.text, e)
	}
	d.a = build(pats)
	d.pats = pats
	d.pre = newPrefilter(d, pats)
	return d
}

func (d *injectionDetector) Category() string { return "injection" }

// Find scans only the segments of text where a phrase may start (see
// prefilter.go), or the whole text when they would cover most of it.
func (d *injectionDetector) Find(text []byte, from int, report func(detect.Match)) {
	v := views.Get().(*view)
	segs, ok := d.segments(text, from, v.segs[:0], v)
	v.segs = segs
	if !ok {
		segs = append(segs[:0], segment{0, len(text)})
	}
	for _, sg := range segs {
		v.text = text
		v.dst, v.offs = norm.Normalize(v.dst, v.offs, text[sg.s:sg.e])
		if sg.s > 0 {
			for k := range v.offs {
				v.offs[k] += int32(sg.s)
			}
		}
		r := runner{d: d, v: v, from: from, report: report, threads: v.threads[:0]}
		r.run()
		v.threads = r.threads
	}
	v.release()
}

// Hold keeps what the grammar may still extend: the automaton's live
// prefix, the trailing word, a phrase waiting for its next token, and an
// unfinished UTF-8 sequence.
func (d *injectionDetector) Hold(text []byte) int {
	tail, off := holdTail(text)
	if h, ok := d.holdQuiet(text, tail, off); ok {
		return h
	}
	return d.holdFull(text)
}

// holdFull is Hold without the quiet path.
func (d *injectionDetector) holdFull(text []byte) int {
	tail, off := holdTail(text)
	v := getView(tail)
	r := runner{d: d, v: v, threads: v.threads[:0], hold: true, unsettled: len(v.dst)}
	r.run()
	v.threads = r.threads
	hold := len(text) - off - len(tail)
	if r.unsettled < len(v.dst) {
		if h := len(text) - (off + v.start(r.unsettled)); h <= maxSpan {
			hold = max(hold, h)
		}
	}
	v.release()
	return min(hold, detect.MaxHold)
}

// A thread is a phrase in progress: started by a token of class rule.
type thread struct {
	rule           int // tVerb, tIntro, tLeak or tLeakQ
	start, lastEnd int // in the view
	flags          uint8
	cjk, weak      bool
}

// runner scans one view.
type runner struct {
	d       *injectionDetector
	v       *view
	from    int
	report  func(detect.Match)
	threads []thread
	lastEnd int // end of the last match, in the view

	hold      bool // Hold's scan: find the earliest unsettled candidate
	unsettled int
}

func (r *runner) run() {
	d, v := r.d, r.v
	state := d.a.scan(v.dst, func(end int, s uint32) {
		for _, p := range d.a.outs[s] {
			r.token(end-int(d.a.plen[p]), end, &d.toks[p])
		}
	})
	if !r.hold {
		return
	}
	liveStart := len(v.dst) - int(d.a.live[state])
	r.settle(liveStart)
	if ws, ok := v.trailingWord(d.maxLen); ok {
		r.settle(ws)
	}
	for _, th := range r.threads {
		// The phrase is live if what follows its last token may still
		// be a gap: fillers, then perhaps the start of a token.
		if liveStart <= th.lastEnd || r.gapPrefix(th.lastEnd, len(v.dst), th.cjk) ||
			liveStart < len(v.dst) && r.gapPrefix(th.lastEnd, liveStart, th.cjk) {
			r.settle(th.start)
		}
	}
}

// settle notes that the candidate starting at i in the view depends on
// text that has not arrived yet.
func (r *runner) settle(i int) {
	if r.hold && i < r.unsettled {
		r.unsettled = i
	}
}

func (r *runner) token(ns, ne int, t *tokInfo) {
	v := r.v
	if t.left && v.wordBefore(ns) || t.right && v.wordAt(ne) {
		return
	}
	if t.lineStart {
		if o := v.start(ns); o > 0 && v.text[o-1] != '\n' && v.text[o-1] != '\r' {
			return
		}
	}
	cjkTok := t.class&tCJK != 0
	type done struct {
		s, e int
		name string
	}
	var completed [16]done
	nc := 0
	complete := func(s, e int, name string) {
		if nc < len(completed) {
			completed[nc] = done{s, e, name}
			nc++
		}
	}
	// Advance the phrases in progress; each ends at this token, matched
	// or not, unless the token overlaps it.
	alive := r.threads[:0]
	for _, th := range r.threads {
		if ns < th.lastEnd {
			alive = append(alive, th)
			continue
		}
		if th.start < r.lastEnd {
			continue
		}
		f, ok := r.gap(th.lastEnd, ns, th.cjk && cjkTok)
		if !ok {
			continue
		}
		f |= th.flags
		switch th.rule {
		case tVerb:
			if t.class&tObj == 0 {
				continue
			}
			if th.weak && f&fStrong == 0 {
				continue
			}
			if f&(fStrong|fQual|fSystem|fSecret) != 0 {
				complete(th.start, ne, "override")
				continue
			}
			if !th.cjk {
				if e := r.postQual(th.start, ne); e > 0 {
					complete(th.start, e, "override")
				}
			}
		case tIntro:
			if t.class&tRole != 0 {
				complete(th.start, ne, "persona")
			}
		case tLeak, tLeakQ:
			if t.class&tObj == 0 {
				continue
			}
			if th.rule == tLeak && f&(fYour|fSecret) != 0 ||
				f&fSecret != 0 || f&fYour != 0 && f&fSystem != 0 {
				complete(th.start, ne, "prompt_leak")
			}
		}
	}
	r.threads = alive
	for _, c := range completed[:nc] {
		r.emit(c.s, c.e, c.name)
	}
	if t.class&(tPhrase|tMarker) != 0 {
		r.emit(ns, ne, t.name)
	}
	if !r.hold && (ns < r.lastEnd || v.start(ns) < r.from) {
		return
	}
	for _, rule := range [...]int{tVerb, tIntro, tLeak, tLeakQ} {
		if t.class&rule != 0 {
			th := thread{rule: rule, start: ns, lastEnd: ne, cjk: cjkTok, weak: rule == tVerb && t.class&tWeak != 0}
			i := len(r.threads)
			for i > 0 && r.threads[i-1].start > ns {
				i--
			}
			r.threads = slices.Insert(r.threads, i, th)
		}
	}
}

func (r *runner) emit(s, e int, name string) {
	v := r.v
	if r.hold {
		// A match ending at the end of the view may still grow over
		// stray continuation bytes (norm.RuneEnd).
		if e == len(v.dst) {
			r.settle(s)
		}
		return
	}
	if s < r.lastEnd {
		return
	}
	os, oe := v.start(s), v.end(e)
	if os < r.from || oe-os > maxSpan {
		return
	}
	if r.report != nil {
		r.report(detect.Match{Start: os, End: oe, Category: "injection", Detector: name})
	}
	r.lastEnd = e
	alive := r.threads[:0]
	for _, th := range r.threads {
		if th.start >= e {
			alive = append(alive, th)
		}
	}
	r.threads = alive
}

// gapSep marks the ASCII bytes that may separate the words of a phrase:
// white space and light punctuation, not the brackets, operators and
// underscores of code ("print(your_prompt)" is not a request).
var gapSep = [128]bool{' ': true, ',': true, '-': true, '.': true, ':': true, '"': true, '\'': true, '*': true, '`': true, '~': true}

// gap checks the view between two tokens of a phrase, [a, b): filler
// words and separators, no sentence end, and returns the fillers' flags.
func (r *runner) gap(a, b int, cjkMode bool) (uint8, bool) {
	f, ok, _ := r.scanGap(a, b, cjkMode, false)
	return f, ok
}

// gapPrefix reports whether the view [a, b) may still become the gap
// before a phrase's next token, b being the end of the view or where a
// token may be starting.
func (r *runner) gapPrefix(a, b int, cjkMode bool) bool {
	// The next token decides the mode: a CJK phrase may still go on in
	// Latin words.
	if _, ok, _ := r.scanGap(a, b, false, true); ok {
		return true
	}
	_, ok, _ := r.scanGap(a, b, cjkMode, true)
	return ok
}

func (r *runner) scanGap(a, b int, cjkMode, open bool) (flags uint8, ok bool, words int) {
	dst := r.v.dst
	if cjkMode {
		if b-a > maxCJKGap {
			return 0, false, 0
		}
		for i := a; i < b; {
			c, n := utf8.DecodeRune(dst[i:b])
			if !cjk(c) && c != ' ' {
				return 0, false, 0
			}
			i += n
		}
		g := dst[a:b]
		for _, q := range cjkQuals {
			if bytes.Contains(g, []byte(q)) {
				flags |= fQual
				if q == "系统" {
					flags |= fSystem
				}
			}
		}
		if bytes.Contains(g, []byte("你的")) {
			flags |= fYour
		}
		return flags, true, 0
	}
	if b-a > maxGap {
		return 0, false, 0
	}
	for i := a; i < b; {
		c, n := utf8.DecodeRune(dst[i:b])
		if wordRune(c) {
			j := i
			for j < b {
				c2, n2 := utf8.DecodeRune(dst[j:b])
				if !wordRune(c2) {
					break
				}
				j += n2
			}
			words++
			if words > maxFillers {
				return 0, false, words
			}
			if open && j == b {
				return flags, j-i <= r.d.maxLen, words
			}
			f, known := fillers[string(dst[i:j])]
			if !known {
				return 0, false, words
			}
			flags |= f
			i = j
			continue
		}
		switch {
		case c == '.' && i+1 < b && dst[i+1] == ' ', c == '!', c == '?', c == ';':
			return 0, false, words
		case c < utf8.RuneSelf && !gapSep[c], cjk(c):
			return 0, false, words
		}
		i += n
	}
	return flags, true, words
}

// postQual looks for a qualifier right after an override's object ("les
// instructions précédentes") and returns the end of the phrase, or 0.
func (r *runner) postQual(start, ne int) int {
	dst := r.v.dst
	i := ne
	for i < len(dst) && i-ne < 3 && dst[i] < utf8.RuneSelf && gapSep[dst[i]] && !(dst[i] == '.' && i+1 < len(dst) && dst[i+1] == ' ') {
		i++
	}
	if i == len(dst) {
		r.settle(start)
		return 0
	}
	j := i
	for j < len(dst) {
		c, n := utf8.DecodeRune(dst[j:])
		if !wordRune(c) {
			break
		}
		j += n
	}
	if j == len(dst) {
		r.settle(start)
	}
	if j > i && fillers[string(dst[i:j])]&(fQual|fSecret|fSystem) != 0 {
		return j
	}
	return 0
}

// holdQuiet is Hold for the common case of a tail with no start token in
// it (the prefilter finds no candidate) that ends in ASCII: no phrase is
// in progress, so only the automaton's live prefix and the trailing word
// are held. Both lie in the last maxLen bytes of the view, which it reads
// straight off the raw bytes from a cut before them. ok is false when the
// case does not apply.
func (d *injectionDetector) holdQuiet(text, tail []byte, off int) (int, bool) {
	v := views.Get().(*view)
	defer views.Put(v)
	segs, ok := d.segments(tail, 0, v.segs[:0], v)
	v.segs = segs
	if !ok || len(segs) > 0 {
		return 0, false
	}
	// A cut before at least maxLen+1 bytes of view.
	p, k := len(tail), 0
	for p > 0 && k <= d.maxLen {
		p--
		k += viewBytes(tail, p)
	}
	if p = cutBefore(tail, p, max(0, p-maxCutBack)); p < 0 {
		return 0, false
	}
	var (
		buf  [256]byte
		raw  [256]int32
		n    int
		st   uint32
		read = asciiReader{text: tail, i: p}
	)
	for n < len(buf) {
		c, ok := read.next()
		if !ok {
			break
		}
		buf[n], raw[n] = c, int32(read.i-1) // the byte that gave c
		n++
		st = d.a.step(st, c)
	}
	if read.i < len(tail) {
		return 0, false // non-ASCII, or too long a stretch of view
	}
	unsettled := n - int(d.a.live[st])
	sv := &view{dst: buf[:n]}
	if ws, ok := sv.trailingWord(d.maxLen); ok {
		unsettled = min(unsettled, ws)
	}
	hold := len(text) - off - len(tail)
	if unsettled < n {
		if h := len(text) - (off + int(raw[unsettled])); h <= maxSpan {
			hold = max(hold, h)
		}
	}
	return min(hold, detect.MaxHold), true
}
