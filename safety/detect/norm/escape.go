package norm

import (
	"unicode/utf8"
)

// Escapes the literal view reads as what they stand for: HTML character
// references ("&#111;", "&#x6f;", "&lt;", "&commat;") and percent-encoded
// printable ASCII ("%40", "%20"), so "ign&#111;re" reads "ignore" and
// "alice%40example.com" reads as an address; and HTML tags without
// attributes inside a word ("ign<b></b>ore") are dropped.

// maxEntity is the longest character reference read ("&#x10FFFF;").
const maxEntity = 10

// maxTags bounds a run of in-word tags, in bytes.
const maxTags = 128

var entities = map[string]rune{
	"amp": '&', "lt": '<', "gt": '>', "quot": '"', "apos": '\'', "nbsp": 0xa0, "commat": '@',
	"period": '.', "colon": ':', "sol": '/', "bsol": '\\', "lowbar": '_', "hyphen": '-', "dash": '-',
	"num": '#', "dollar": '$', "percnt": '%', "excl": '!', "quest": '?', "equals": '=', "plus": '+',
	"semi": ';', "comma": ',', "lpar": '(', "rpar": ')', "lsqb": '[', "rsqb": ']', "lcub": '{', "rcub": '}',
	"verbar": '|', "ast": '*', "grave": '`', "Hat": '^', "tilde": '~', "zwsp": 0x200b, "shy": 0xad,
}

// escapeAt reads the escape at text[i] ('&' or '%'): the rune it stands
// for and its length, or n == 0.
func escapeAt(text []byte, i int) (r rune, n int) {
	switch text[i] {
	case '%':
		if i+2 < len(text) {
			h, l := unhex(text[i+1]), unhex(text[i+2])
			if h < 0 || l < 0 {
				return 0, 0
			}
			c := h<<4 | l
			if c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r' {
				return rune(c), 3
			}
		}
		return 0, 0
	case '&':
		j := i + 1
		for j < len(text) && j-i <= maxEntity && text[j] != ';' && isEntityByte(text[j]) {
			j++
		}
		if j >= len(text) || text[j] != ';' || j == i+1 {
			return 0, 0
		}
		name := text[i+1 : j]
		if name[0] == '#' {
			v, ok := charRef(name[1:])
			if !ok {
				return 0, 0
			}
			return v, j + 1 - i
		}
		if v, ok := entities[string(name)]; ok {
			return v, j + 1 - i
		}
	}
	return 0, 0
}

func isEntityByte(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '#'
}

func charRef(b []byte) (rune, bool) {
	base := 10
	if len(b) > 0 && (b[0] == 'x' || b[0] == 'X') {
		base, b = 16, b[1:]
	}
	if len(b) == 0 || len(b) > 7 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		d := unhex(c)
		if d < 0 || d >= base {
			return 0, false
		}
		v = v*base + d
	}
	if v == 0 || v > utf8.MaxRune || v >= 0xd800 && v <= 0xdfff {
		return 0, false
	}
	return rune(v), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

// tagsAt returns the length of the run of attribute-less HTML tags at
// text[i] ('<'), when a letter comes right before and right after it, or 0.
func tagsAt(text []byte, i int) int {
	if i == 0 || !isASCIILetter(text[i-1]) {
		return 0
	}
	j := i
	for j < len(text) && text[j] == '<' && j-i < maxTags {
		k := j + 1
		if k < len(text) && text[k] == '/' {
			k++
		}
		s := k
		for k < len(text) && k-j < 32 && (isASCIILetter(text[k]) || k > s && text[k] >= '0' && text[k] <= '9') {
			k++
		}
		if k == s {
			break
		}
		if k < len(text) && text[k] == '/' {
			k++
		}
		if k >= len(text) || text[k] != '>' {
			break
		}
		j = k + 1
	}
	if j == i || j-i > maxTags || j >= len(text) || !isASCIILetter(text[j]) {
		return 0
	}
	return j - i
}

// mayEscape marks the bytes special looks at.
var mayEscape = [256]bool{'&': true, '%': true, '<': true}

// special reports whether text[i], a plain byte, starts something the
// literal view reads otherwise: an escape or in-word tags.
func special(text []byte, i int) bool {
	switch text[i] {
	case '&', '%':
		_, n := escapeAt(text, i)
		return n > 0
	case '<':
		return tagsAt(text, i) > 0
	}
	return false
}

// srcLen is how many bytes of text the literal view read at o, the offset
// of a byte of the view: an escape or one rune.
func srcLen(text []byte, o int) int {
	if c := text[o]; c == '&' || c == '%' {
		if _, n := escapeAt(text, o); n > 0 {
			return n
		}
	}
	_, n := utf8.DecodeRune(text[o:])
	return n
}

// escapePending returns how many bytes at the end of text may still be read
// otherwise: a partial escape or a run of tags that may still be in a word.
func escapePending(text []byte) int {
	n := len(text)
	h := 0
	for k := 1; k <= maxEntity && k <= n; k++ {
		c := text[n-k]
		if c == '&' || c == '%' && k <= 2 {
			h = k
		}
		if c == '&' || !isEntityByte(c) && c != '%' {
			break
		}
	}
	// A trailing run of tag bytes holding a '<' after a letter.
	j := n
	for j > 0 && n-j <= maxTags && (isASCIILetter(text[j-1]) || text[j-1] >= '0' && text[j-1] <= '9' || text[j-1] == '<' || text[j-1] == '>' || text[j-1] == '/') {
		j--
	}
	for k := j; k < n; k++ {
		if text[k] == '<' && k > 0 && isASCIILetter(text[k-1]) {
			h = max(h, n-k)
			break
		}
	}
	return h
}
