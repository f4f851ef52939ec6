package secret

import "unicode/utf8"

// anchors are the bytes the rules start looking from, found in one pass
// with a table (in code and config they are too frequent for a
// bytes.IndexByte per anchor to pay); Find sorts the candidates.
const anchors = "AJ_-.=:G,"

// scan appends the candidates starting at or after from that are matches or
// still open. Anchors from lo on are examined, so that an assignment
// operator just before from can still produce a value after it.
func scan(text []byte, from, lo int, cs []cand) []cand {
	n := len(text)
	add := func(c cand) {
		// A match must end on a rune boundary: one followed by a stray
		// continuation byte (invalid UTF-8) is not reported.
		if c.ok && c.end < n && !utf8.RuneStart(text[c.end]) {
			c.ok = false
		}
		if c.start >= from && (c.ok || c.open) {
			cs = append(cs, c)
		}
	}
	for i := lo; i < n; i++ {
		switch c := text[i]; {
		case !isAnchor[c]:
		case c == '.' && (i < 5 || text[i-1] != 's'), c == 'G' && (i+1 == n || text[i+1] != 'R'):
			// The frequent '.' and 'G' anchor only ".slack.com/" after
			// "hooks" and "GR1348941": ruled out here, without a call.
		default:
			check(text, i, add)
		}
	}
	return cs
}

// isAnchor has the anchor bytes.
var isAnchor = func() (t [256]bool) {
	for _, c := range []byte(anchors) {
		t[c] = true
	}
	return t
}()
