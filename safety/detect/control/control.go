// Package control finds terminal control sequences: ANSI escape sequences,
// 8-bit C1 controls and C0 control characters other than tab, newline and
// carriage return. Written to a terminal they move the cursor, rewrite the
// screen, set the window title or the clipboard, or hide text, so a model's
// output (or a prompt echoed back) can attack whoever reads it in a shell.
//
// Detector names:
//   - "ansi": ESC-introduced sequences: CSI (ESC [ params final) and
//     ESC [intermediates] final (ESC 7, ESC ( B, ESC c …).
//   - "osc": string sequences introduced by ESC: OSC (ESC ]), DCS (ESC P),
//     SOS (ESC X), PM (ESC ^) and APC (ESC _), up to and including their
//     terminator (BEL, ESC \ or U+009C).
//   - "c1": U+0080–U+009F as runes, with the body of CSI (U+009B) and the
//     string controls (U+0090, U+0098, U+009D, U+009E, U+009F); and a raw
//     0x9B byte that is not part of a valid UTF-8 sequence (8-bit CSI).
//   - "c0": any other byte 0x00–0x1F except \t \n \r, including a lone ESC.
//     DEL (0x7F) is not reported.
//
// Each sequence is one match; adjacent sequences are separate matches.
package control

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
)

// Category is the policy name of everything this package reports.
const Category = "control"

const (
	// csiMax bounds a CSI (introducer, parameters, final byte). Past it the
	// sequence is given up: only the introducer is reported and the
	// parameters are left as the plain text they then are.
	csiMax = 256
	// escMax bounds ESC with intermediate bytes, likewise.
	escMax = 16
	// stringMax bounds a string sequence: its terminator must begin within
	// stringMax bytes of the introducer, or only the introducer is reported.
	stringMax = 4096
)

// special marks the bytes that may start a match: C0 controls other than
// \t \n \r, the UTF-8 lead byte of U+0080–U+00BF, and a raw 0x9B.
var special = func() (t [256]bool) {
	for b := range 0x20 {
		t[b] = b != '\t' && b != '\n' && b != '\r'
	}
	t[0xC2] = true
	t[0x9B] = true
	return t
}()

type detector struct{}

var _ detect.SpecialFinder = detector{}

// New returns the terminal control sequence detector. It has no options.
//
// A raw 0x9B byte cannot start a match, since matches must start on a rune
// boundary, so its match starts at the rune before it (at most three bytes
// back) and takes that rune along; for the same reason Hold always keeps the
// last rune of its text. Warden's JSON front ends replace invalid UTF-8
// before detectors see it, so raw 8-bit controls only reach this detector
// through `warden scan`.
func New() detect.Detector { return detector{} }

func (detector) Category() string { return Category }

// RawText marks the detector as reading the original text (detect.Raw):
// it reports the bytes the view drops.
func (detector) RawText() {}

func (detector) Find(text []byte, from int, report func(detect.Match)) {
	scan(text, from, nil, report)
}

// FindSpecial is Find stepping from one special byte of text to the next
// (detect.SpecialFinder): every control starts at a C0 control or a byte
// of 0x80 or more, all of them special.
func (detector) FindSpecial(text []byte, from int, sp *detect.Specials, report func(detect.Match)) {
	scan(text, from, sp, report)
}

// Hold keeps an unfinished sequence at the end of text (ESC, ESC [ 1 ; 3,
// an OSC waiting for its terminator, at most stringMax bytes) and the last
// rune, which a raw 0x9B arriving next would take into its match.
func (detector) Hold(text []byte) int {
	n := len(text)
	h := 0
	for k := n - 1; k >= 0 && k >= n-3; k-- {
		if utf8.RuneStart(text[k]) {
			h = n - k
			break
		}
	}
	// Any sequence still open began less than stringMax bytes ago, and its
	// body holds no byte that could start a sequence, so scanning from a
	// little further back finds it whatever state that point was in.
	if open := scan(text, max(0, n-stringMax-8), nil, nil); open >= 0 {
		h = max(h, n-open)
	}
	return min(h, detect.MaxHold)
}

// scan reports the matches starting at or after from (when report is not
// nil) and returns the start of the last match if more text could still
// change it, or -1. sp, when not nil, holds text's special bytes.
func scan(text []byte, from int, sp *detect.Specials, report func(detect.Match)) int {
	n := len(text)
	last := -1
	for i := from; i < n; {
		if sp != nil {
			// From one special byte to the next, over the bytes of
			// runes that start no control.
			i = sp.Next(i)
			for i < n && text[i] >= 0x80 && !special[text[i]] {
				i++
			}
			if i < n && !special[text[i]] {
				i++ // printable ASCII or DEL
				continue
			}
		}
		// Skip eight bytes at a time while all are printable ASCII.
		for i+8 <= n {
			w := binary.LittleEndian.Uint64(text[i:])
			if ((w-0x2020202020202020)|w)&0x8080808080808080 != 0 {
				break
			}
			i += 8
		}
		for i < n && !special[text[i]] {
			i++
			if i&7 == 0 {
				break
			}
		}
		if i < n && !special[text[i]] {
			continue
		}
		if i >= n {
			break
		}
		m := detect.Match{Start: i, Category: Category}
		var op bool
		switch b := text[i]; {
		case b == 0x1B:
			m.End, m.Detector, op = escape(text, i)
		case b < 0x20:
			m.End, m.Detector = i+1, "c0"
		case b == 0xC2:
			if i+1 >= n || text[i+1] < 0x80 || text[i+1] > 0x9F {
				i++
				continue
			}
			m.End, op = c1(text, i)
			m.Detector = "c1"
		default: // 0x9B
			s, ok := rawCSI(text, i)
			if !ok || s < from {
				i++
				continue
			}
			m.Start, m.Detector = s, "c1"
			m.End, op = csi(text, i+1, i+csiMax)
		}
		// A control followed by stray UTF-8 continuation bytes (invalid
		// text) takes up to three of them along, since a match must end on
		// a rune boundary; with more than three it is not reported. More
		// bytes may extend a match that ends with the text.
		e := m.End
		for k := 0; k < 3 && e < n && !utf8.RuneStart(text[e]); k++ {
			e++
		}
		if e < n && !utf8.RuneStart(text[e]) {
			i = e
			continue
		}
		m.End = e
		if report != nil {
			report(m)
		}
		last = -1
		if op || e == n {
			last = m.Start
		}
		i = m.End
	}
	return last
}

// escape parses the sequence introduced by the ESC at i.
func escape(text []byte, i int) (end int, name string, open bool) {
	if i+1 >= len(text) {
		return i + 1, "c0", true
	}
	switch b := text[i+1]; {
	case b == '[':
		end, open = csi(text, i+2, i+csiMax)
		return end, "ansi", open
	case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
		end, open = str(text, i+2, i+stringMax)
		return end, "osc", open
	case b >= 0x20 && b <= 0x2F:
		for k := i + 2; ; k++ {
			switch {
			case k >= i+escMax:
				return i + 1, "c0", false
			case k >= len(text):
				return len(text), "ansi", true
			case text[k] >= 0x20 && text[k] <= 0x2F:
			case text[k] >= 0x30 && text[k] <= 0x7E:
				return k + 1, "ansi", false
			default:
				return k, "ansi", false
			}
		}
	case b >= 0x30 && b <= 0x7E:
		return i + 2, "ansi", false
	}
	return i + 1, "c0", false
}

// c1 parses the C1 control rune (0xC2 0x80–0x9F) at i.
func c1(text []byte, i int) (end int, open bool) {
	switch text[i+1] {
	case 0x9B:
		return csi(text, i+2, i+csiMax)
	case 0x90, 0x98, 0x9D, 0x9E, 0x9F:
		return str(text, i+2, i+stringMax)
	}
	return i + 2, false
}

// csi parses CSI parameter and intermediate bytes from j and the final
// byte. Given up at lim, it ends at j, after the introducer; cut short by
// any other byte, it ends before that byte.
func csi(text []byte, j, lim int) (end int, open bool) {
	for k := j; ; k++ {
		switch {
		case k >= lim:
			return j, false
		case k >= len(text):
			return len(text), true
		case text[k] >= 0x20 && text[k] <= 0x3F:
		case text[k] >= 0x40 && text[k] <= 0x7E:
			return k + 1, false
		default:
			return k, false
		}
	}
}

// str parses a string sequence body from j through its terminator (BEL,
// ESC \, U+009C). Any other control cuts the string short before it, as a
// terminal would abandon it; no terminator starting before lim means it is
// given up and ends at j, after the introducer.
func str(text []byte, j, lim int) (end int, open bool) {
	n := len(text)
	for k := j; ; k++ {
		if k >= lim {
			return j, false
		}
		if k >= n {
			return n, true
		}
		switch b := text[k]; {
		case b == 0x07:
			return k + 1, false
		case b == 0x1B:
			if k+1 >= n {
				return n, true
			}
			if text[k+1] == '\\' {
				return k + 2, false
			}
			return k, false
		case b < 0x20:
			return k, false
		case b == 0xC2:
			if k+1 >= n {
				return n, true
			}
			if c := text[k+1]; c == 0x9C {
				return k + 2, false
			} else if c >= 0x80 && c <= 0x9F {
				return k, false
			}
		case b == 0x9B:
			if s, ok := rawCSI(text, k); ok {
				// The raw CSI taking the rune at s ends the string.
				return max(s, j), false
			}
		}
	}
}

// rawCSI reports whether the 0x9B at i is a stray byte rather than part of
// a valid UTF-8 sequence, and where its match starts: the rune start at most
// three bytes before it.
func rawCSI(text []byte, i int) (start int, ok bool) {
	for s := i - 1; s >= 0 && s >= i-3; s-- {
		if utf8.RuneStart(text[s]) {
			_, size := utf8.DecodeRune(text[s:])
			return s, s+size <= i
		}
	}
	return 0, false
}
