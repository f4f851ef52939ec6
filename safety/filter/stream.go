package filter

import (
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// Stream filters a text that arrives in pieces. Each Write returns the text
// that is now safe to release: everything except what some detector is
// still holding (a trailing run of digits, an unfinished address, a phrase
// automaton's live state), redacted per the profile. Held text is kept, not
// re-scanned from the start: each step scans only the held text and a few
// bytes of released context, so the cost per byte stays bounded.
//
// After a block in an answer the stream is over: Write and Close return ""
// and Blocked reports true. The text released before the blocked match
// stays released. A prompt is always scanned to its end.
type Stream struct {
	r    *Request
	dir  Direction
	dets []detect.Detector // the raw ones (detect.Raw), then those reading the literal view
	nraw int

	lv     *litView         // the literal view of the window, when it is not plain
	digits *detect.Digits   // the digit scan of what the view detectors read, shared by the detect.DigitFinders
	sp     *detect.Specials // the special bytes of the window, shared by the detect.SpecialFinders and the view

	win  []byte // released context, then held text
	from int    // win[:from] is released context
	base int    // offset of win[0] in the whole text

	blocked  bool
	closed   bool
	findings []Finding
	ms       []detect.Match     // the window's matches (release)
	msBuf    *[]detect.Match    // ms's pooled home, held while the text lasts
	add      func(detect.Match) // collects a wanted match into ms
	maxHold  int

	// whole are the detectors that judge an answer once it has ended
	// (detect.Whole); a prompt gives them its text with the others.
	whole []detect.Detector

	answer strings.Builder // the raw answer, for the repeat check and whole (output only)
	repeat bool
	keep   bool // keep the answer
}

// maxAnswerBytes bounds what the repeat check and the whole-text detectors
// see of an answer.
const maxAnswerBytes = 64 << 10

// Output starts filtering the request's answer. One answer per Request:
// the repeat check counts every Output stream as an answer.
func (r *Request) Output() *Stream { return r.stream(Output, true) }

func (r *Request) stream(dir Direction, answer bool) *Stream {
	dets := r.dets
	if dir == Output && len(r.canary) > 0 {
		dets = append(slices.Clip(r.dets), r.canary...)
	}
	s := &Stream{r: r, dir: dir, dets: make([]detect.Detector, 0, len(dets))}
	for _, d := range dets {
		if _, ok := d.(detect.Whole); ok && dir == Output {
			if r.p.Action(Output, d.Category()) != Allow || r.showAllowed {
				s.whole = append(s.whole, d)
			}
		} else if _, ok := d.(detect.Raw); ok {
			s.dets = append(s.dets, d)
		}
	}
	s.nraw = len(s.dets)
	for _, d := range dets {
		_, raw := d.(detect.Raw)
		_, whole := d.(detect.Whole)
		if !raw && !(whole && dir == Output) {
			s.dets = append(s.dets, d)
		}
	}
	s.repeat = answer && r.e.repeats != nil && r.p.Action(Output, CatRepeat) != Allow
	s.keep = answer && (s.repeat || len(s.whole) > 0)
	return s
}

// Blocked reports whether a blocking finding ended the stream.
func (s *Stream) Blocked() bool { return s.blocked }

// MaxHold is the most text the stream has held back at once, in bytes.
func (s *Stream) MaxHold() int { return s.maxHold }

// Findings returns the stream's findings so far (allowed ones excluded).
func (s *Stream) Findings() []Finding { return s.findings }

// Write adds a piece of text and returns what can be released now.
func (s *Stream) Write(chunk string) string {
	if s.over() || chunk == "" {
		return ""
	}
	s.win = append(s.win, chunk...)
	return s.step(false)
}

// Close ends the text and returns whatever was still held, filtered.
func (s *Stream) Close() string {
	if s.over() {
		return ""
	}
	out := s.step(true)
	s.closed = true
	s.putView()
	if len(s.whole) > 0 && !s.blocked {
		s.judgeWhole([]byte(s.answer.String()))
	}
	if s.repeat && !s.blocked {
		if n := s.r.e.repeats.check(s.answer.String()); n > 0 {
			s.record(detect.Match{Category: CatRepeat, Detector: repeatDetector(n), End: len(s.win)})
		}
	}
	return out
}

func (s *Stream) over() bool { return s.closed || (s.blocked && s.dir == Output) }

func (s *Stream) step(final bool) string {
	out, cut := s.release(final, "")
	if s.blocked && s.dir == Output {
		s.win = nil
		s.putView()
		return out
	}

	// Keep a little released context for the detectors' boundary checks.
	keep := max(0, cut-detect.Context)
	s.base += keep
	s.win = append(s.win[:0], s.win[keep:]...)
	s.from = cut - keep
	return out
}

// scanWhole filters text as the stream's only piece and ends the stream:
// what Write(text) followed by Close returns, in one step. The detectors
// read text in place, through a byte slice over the string's memory, so a
// prompt is neither copied into the window nor trimmed afterwards. Nothing
// may write into that slice: step never runs on it (it trims the window in
// place), the detectors only read their text, and its capacity ends with
// the string, so an append to it would copy.
func (s *Stream) scanWhole(text string) string {
	s.win = unsafe.Slice(unsafe.StringData(text), len(text))
	out, _ := s.release(true, text)
	if len(s.whole) > 0 && !s.blocked {
		s.judgeWhole(s.win[:min(len(text), maxAnswerBytes)])
	}
	s.win = nil
	s.closed = true
	s.putView()
	return out
}

// judgeWhole runs the whole-text detectors (detect.Whole) over an answer
// that has ended — its first maxAnswerBytes, read through the literal view
// like the other detectors — and records what they find. The answer has
// been released by then: flag and redact record the finding, block marks
// the answer blocked (it ends with finish reason content_filter) but
// cannot take back what was sent. A streamed answer and the same answer
// scanned whole give the same findings.
func (s *Stream) judgeWhole(text []byte) {
	view, plain := text, norm.Plain(text)
	var vm norm.OffsetMap
	if !plain {
		lv := litViews.Get().(*litView)
		defer litViews.Put(lv)
		lv.dst, lv.m = norm.LiteralMap(lv.dst, lv.m, text, s.readTags())
		view, vm = lv.dst, lv.m
	}
	for _, d := range s.whole {
		cur := vm.Cursor()
		d.Find(view, 0, func(m detect.Match) {
			if !plain {
				m.Start, m.End = cur.At(m.Start), cur.End(text, m.End)
			}
			if !s.wanted(m) {
				return
			}
			if s.recordAt(m, 0) == Block {
				s.blocked = true
			}
		})
	}
}

// release runs the detectors over the window, records the findings that
// end before the cut (the whole window when final) and returns the text up
// to the cut (or to a blocking match), redacted, and the cut. When src is
// not "" it holds the same bytes as the window, and text released without
// a redaction is returned as a part of it rather than copied.
//
// The raw detectors (detect.Raw) read the window; the others read its
// literal view (norm.Literal), and their matches are mapped back to the
// window: a match covers the original runes it was read from, invisible
// characters between them included. A plain window (printable ASCII) is
// its own view. The window's special bytes (detect.Specials) are found
// once, for the view and the raw detectors.
func (s *Stream) release(final bool, src string) (string, int) {
	win := s.win
	if s.msBuf == nil {
		// Once per text, not per piece: the match list and its collector.
		s.msBuf = matchBufs.Get().(*[]detect.Match)
		s.ms = (*s.msBuf)[:0]
		s.add = func(m detect.Match) {
			if s.wanted(m) {
				s.ms = append(s.ms, m)
			}
		}
	}
	s.ms = s.ms[:0]
	add := s.add
	// Before the end of the text, the view stops short of what may still
	// read otherwise (norm.LiteralPending), which stays held.
	end := len(win)
	if !final {
		end -= norm.LiteralPending(win)
	}
	vw := win[:max(end, 0)]
	if s.sp == nil {
		s.sp = specialScans.Get().(*detect.Specials)
	}
	s.sp.Scan(win)
	plain := norm.PlainScanned(vw, s.sp)
	for _, d := range s.dets[:s.nraw] {
		if sf, ok := d.(detect.SpecialFinder); ok {
			sf.FindSpecial(win, s.from, s.sp, add)
		} else {
			d.Find(win, s.from, add)
		}
	}
	var view []byte
	var vm norm.OffsetMap
	switch {
	case end <= s.from:
		// Nothing new the view can judge yet.
	case plain:
		scanned := false
		for _, d := range s.dets[s.nraw:] {
			s.find(d, vw, s.from, &scanned, add)
		}
	case len(s.dets) > s.nraw:
		if s.lv == nil {
			s.lv = litViews.Get().(*litView)
		}
		s.lv.dst, s.lv.m = norm.LiteralMapScanned(s.lv.dst, s.lv.m, vw, s.readTags(), s.sp)
		view, vm = s.lv.dst, s.lv.m
		vfrom := vm.Start(s.from, len(view))
		cur := vm.Cursor()
		mapped := func(m detect.Match) {
			m.Start, m.End = cur.At(m.Start), cur.End(vw, m.End)
			add(m)
		}
		scanned := false
		for _, d := range s.dets[s.nraw:] {
			s.find(d, view, vfrom, &scanned, mapped)
		}
	}
	ms := s.ms
	slices.SortFunc(ms, func(a, b detect.Match) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		return b.End - a.End
	})

	cut := len(win)
	if !final {
		hold := len(win) - max(end, s.from)
		for _, d := range s.dets[:s.nraw] {
			hold = max(hold, d.Hold(win))
		}
		if end > s.from {
			for _, d := range s.dets[s.nraw:] {
				h := 0
				if plain {
					h = d.Hold(vw)
				} else if h = d.Hold(view); h > 0 {
					h = end - vm.At(len(view)-min(h, len(view)))
				}
				hold = max(hold, len(win)-end+h)
			}
		}
		cut = len(win) - min(hold, detect.MaxHold)
		// Never cut through a match: the cut moves back to its start,
		// and that may move it into an earlier match.
		for moved := true; moved; {
			moved = false
			for _, m := range ms {
				if m.Start < cut && m.End > cut {
					cut, moved = m.Start, true
				}
			}
		}
		cut = max(cut, s.from)
		for cut > s.from && cut < len(win) && !utf8.RuneStart(win[cut]) {
			cut--
		}
		s.maxHold = max(s.maxHold, len(win)-cut)
	}

	// A block ends the text at the blocking match's start: the first
	// blocking match in order of start, so that where a text stops does not
	// depend on how it was chunked.
	// A prompt is scanned to its end either way (it is refused whole, and
	// the audit record should name everything found); its blocked spans
	// are replaced like redactions.
	block, end := -1, cut
	for i, m := range ms {
		if m.End <= cut && s.action(m) == Block {
			s.blocked = true
			if s.dir == Output {
				block, end = i, m.Start
				break
			}
		}
	}

	// Room for every finding at once: a text dense with findings would
	// otherwise grow both lists many times.
	s.findings = slices.Grow(s.findings, len(ms))
	s.r.findings = slices.Grow(s.r.findings, len(ms))

	// The builder is sized on the first redaction; until then at stays at
	// s.from and the released text is one unbroken part of the window.
	var out strings.Builder
	at := s.from // next byte of win to write
	for i, m := range ms {
		if m.End > cut || (block >= 0 && i > block) {
			continue
		}
		act := s.record(m)
		if i == block || (act != Redact && act != Block) || m.End <= at || m.Score > 0 {
			continue
		}
		if m.Start >= at {
			if at == s.from {
				out.Grow(end - s.from)
			}
			out.Write(win[at:m.Start])
			out.WriteString(s.r.placeholder(m.Category, win[m.Start:m.End]))
		}
		// A match overlapping the last redacted span extends it.
		at = m.End
	}
	if s.keep && s.answer.Len() < maxAnswerBytes {
		s.answer.Write(win[s.from:min(cut, s.from+maxAnswerBytes-s.answer.Len())])
	}
	switch {
	case at == s.from && src != "":
		return src[at:max(at, end)], cut
	case at == s.from:
		return string(win[at:max(at, end)]), cut
	}
	if at < end {
		out.Write(win[at:end])
	}
	return out.String(), cut
}

// find runs d over text from from. A detect.DigitFinder gets the shared
// digit scan of text, made by the first one that needs it (*scanned
// says whether it has been made for this text).
func (s *Stream) find(d detect.Detector, text []byte, from int, scanned *bool, report func(detect.Match)) {
	df, ok := d.(detect.DigitFinder)
	if !ok {
		d.Find(text, from, report)
		return
	}
	if !*scanned {
		if s.digits == nil {
			s.digits = digitScans.Get().(*detect.Digits)
		}
		s.digits.Scan(text)
		*scanned = true
	}
	df.FindDigits(text, from, s.digits, report)
}

var digitScans = sync.Pool{New: func() any { return new(detect.Digits) }}

var specialScans = sync.Pool{New: func() any { return new(detect.Specials) }}

// matchBufs holds the match lists of ended streams: a text dense with
// findings would otherwise grow a new one many times.
var matchBufs = sync.Pool{New: func() any { return new([]detect.Match) }}

// litView holds a literal view and its offsets, reused across streams.
type litView struct {
	dst []byte
	m   norm.OffsetMap
}

var litViews = sync.Pool{New: func() any { return new(litView) }}

// putView returns the stream's view buffers, digit scan and match list
// once the text is over.
func (s *Stream) putView() {
	if s.msBuf != nil {
		if cap(s.ms) <= 1<<14 {
			*s.msBuf = s.ms[:0]
			matchBufs.Put(s.msBuf)
		}
		s.msBuf, s.ms = nil, nil
	}
	if s.digits != nil {
		s.digits.Scan(nil) // drops the text; keeps the memory
		if s.digits.Cap() <= 1<<17 {
			digitScans.Put(s.digits)
		}
		s.digits = nil
	}
	if s.sp != nil {
		s.sp.Scan(nil) // drops the text; keeps the memory
		if s.sp.Cap() <= 8<<20 {
			specialScans.Put(s.sp)
		}
		s.sp = nil
	}
	if s.lv == nil {
		return
	}
	if cap(s.lv.dst) > 2<<20 || cap(s.lv.m) > 1<<18 {
		s.lv.dst, s.lv.m = nil, nil
	}
	litViews.Put(s.lv)
	s.lv = nil
}

// readTags reports whether tag characters reach the reader: unless the
// policy strips hidden Unicode, the literal view reads them as ASCII.
func (s *Stream) readTags() bool {
	a := s.r.p.Action(s.dir, CatHiddenUnicode)
	return a != Redact && a != Block
}

// wanted reports whether a match counts: a scored match must reach the
// profile's threshold, and findings whose action is allow are dropped
// early, except when the request shows them (warden scan).
func (s *Stream) wanted(m detect.Match) bool {
	if m.Score > 0 && m.Category == CatInjection && float64(m.Score) < s.r.p.InjectionThreshold {
		return false
	}
	return s.r.p.Action(s.dir, m.Category) != Allow || s.r.showAllowed
}

// action is the profile's action for m. A scored match is a verdict on a
// window of text, not a span to cut out of it: with redact, the spans the
// phrase grammar finds in the same category are redacted, and the
// classifier's verdict is recorded as a flag. Its text is never replaced.
func (s *Stream) action(m detect.Match) Action {
	a := s.r.p.Action(s.dir, m.Category)
	if a == Redact && m.Score > 0 {
		return Flag
	}
	return a
}

// record notes a finding in absolute offsets and returns its action.
func (s *Stream) record(m detect.Match) Action { return s.recordAt(m, s.base) }

// recordAt notes a finding whose offsets are relative to base.
func (s *Stream) recordAt(m detect.Match, base int) Action {
	act := s.action(m)
	if act == Allow && !s.r.showAllowed {
		return act
	}
	f := Finding{Direction: s.dir, Category: m.Category, Detector: m.Detector,
		Start: base + m.Start, End: base + m.End, Action: act, Score: roundScore(m.Score)}
	if m.Category == CatRepeat {
		f.Start = 0
	}
	s.findings = append(s.findings, f)
	s.r.findings = append(s.r.findings, f)
	return act
}

// roundScore keeps four decimals of a score: what a reader of the audit
// record or warden scan's output can use.
func roundScore(x float32) float64 { return math.Round(float64(x)*1e4) / 1e4 }
