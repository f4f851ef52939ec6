package secret

import (
	"bytes"
	"math"

	"github.com/warden-llm/warden/safety/detect"
)

// assignment evaluates a generic "key = value" at the operator at p: '=',
// ':', ':=', '=>', and Make's '::=' and '?=', the key name ending
// (case-insensitively, at a word or camelCase boundary) in password,
// passwd, pwd, secret, token or key, the value a run of 12–128 value
// characters that is not a placeholder and looks random. The key may be
// quoted, an index (os.environ["API_KEY"] = …) or followed by a declared
// type (Go's var apiKey string = …, TypeScript's apiKey: string = …).
// A value that is base64 of printable text (Kubernetes Secret manifests)
// is judged by what it decodes to. A key naming an AWS secret access key
// with a 40-character base64 value gives "aws-secret-key".
func assignment(text []byte, p int) (cand, bool) {
	n := len(text)
	opStart, opEnd := p, p+1
	if text[p] == ':' {
		if p+1 < n && (text[p+1] == ':' || text[p+1] == '=' || text[p+1] == '/') || p > 0 && text[p-1] == ':' {
			return cand{}, false
		}
	} else {
		if p+1 < n && text[p+1] == '>' {
			opEnd = p + 2
		} else if p+1 < n && text[p+1] == '=' {
			return cand{}, false
		}
		if p > 0 {
			switch text[p-1] {
			case ':':
				opStart = p - 1
				if p > 1 && text[p-2] == ':' { // Make's ::=
					opStart = p - 2
				}
			case '?': // Make's ?=
				opStart = p - 1
			case '=', '!', '<', '>', '+', '-', '*', '/', '|', '&', '^', '%':
				return cand{}, false
			}
		}
	}
	k := opStart
	for sp := 0; k > 0 && sp < 2 && (text[k-1] == ' ' || text[k-1] == '\t'); sp++ {
		k--
	}
	if k > 0 && (text[k-1] == 'g' || text[k-1] == 'r' || text[k-1] == 'e') {
		k = skipType(text, k)
	}
	if k > 1 && text[k-1] == ']' && (text[k-2] == '"' || text[k-2] == '\'') {
		k--
	}
	if k > 0 && (text[k-1] == '"' || text[k-1] == '\'') {
		k--
	}
	kw, pw := keyword(text, k)
	if kw == 0 || notSecretName(text, k) {
		return cand{}, false
	}
	v := opEnd
	for sp := 0; v < n && sp < 3 && (text[v] == ' ' || text[v] == '\t'); sp++ {
		v++
	}
	if v < n && (text[v] == '"' || text[v] == '\'' || text[v] == '`') {
		v++
	}
	e := v
	for e < n && e-v <= genericMax && value[text[e]] {
		e++
	}
	c := cand{start: v, end: e, name: "generic-secret", generic: true}
	c.open = e == n && e-v <= genericMax
	val := text[v:e]
	if len(val) == 40 && awsSecretKey(text, k) && allIn(val, &b64Std) && !isSample(val) && !placeholderBody(val) {
		c.name, c.generic, c.ok = "aws-secret-key", false, true
		return c, true
	}
	// A value cut by a template ("cache-3|${{ hashFiles(…) }}") is not one.
	c.ok = genericValue(val, pw) && (e == n || text[e] != '{')
	return c, true
}

// genericValue reports whether val, the value of a secret-named key, is a
// secret: randomValue judges it, or what it decodes to when it is base64
// of printable text.
func genericValue(val []byte, pw bool) bool {
	if len(val) < genericMin || len(val) > genericMax || isSample(val) {
		return false
	}
	var buf [genericMax]byte
	if dec, ok := encodedValue(val, buf[:]); ok {
		return len(dec) >= genericMin && randomValue(dec, pw)
	}
	return randomValue(val, pw)
}

// skipType returns where the key name ends when the word ending at k is a
// declared string type: Go's "var apiKey string", TypeScript's
// "apiKey: string", Rust's "api_key: &str"; otherwise k.
func skipType(text []byte, k int) int {
	for _, t := range []string{"string", "String", "&str", "str", "[]byte"} {
		j := k - len(t)
		if j < 2 || string(text[j:k]) != t || (text[j-1] != ' ' && text[j-1] != ':') {
			continue
		}
		for sp := 0; j > 0 && sp < 2 && text[j-1] == ' '; sp++ {
			j--
		}
		if j > 0 && text[j-1] == ':' {
			j--
		}
		return j
	}
	return k
}

// callArgument evaluates a key and a value passed as a call's first two
// arguments, as System.setProperty("db.password", "…"),
// os.Setenv("API_TOKEN", "…") and map.put("secret", "…") pass them: at the
// ',' at p, a quoted key name opened right after '(' (or '{' or '[', a
// pair in a literal) and a value quoted
// the same way after at most two spaces.
func callArgument(text []byte, p int) (cand, bool) {
	n := len(text)
	if p < 3 || text[p-1] != '"' && text[p-1] != '\'' {
		return cand{}, false
	}
	q, k := text[p-1], p-1
	j := k - 1
	for j >= 0 && k-j <= keyLookback && keyName[text[j]] {
		j--
	}
	if j < 1 || text[j] != q || text[j-1] != '(' && text[j-1] != '{' && text[j-1] != '[' {
		return cand{}, false
	}
	kw, pw := keyword(text, k)
	if kw == 0 || notSecretName(text, k) {
		return cand{}, false
	}
	v := p + 1
	for sp := 0; v < n && sp < 2 && text[v] == ' '; sp++ {
		v++
	}
	c := cand{start: v, end: v, name: "generic-secret", generic: true}
	if v == n {
		c.open = true
		return c, true
	}
	if text[v] != q {
		return cand{}, false
	}
	v++
	e := v
	for e < n && e-v <= genericMax && value[text[e]] {
		e++
	}
	c.start, c.end = v, e
	c.open = e == n && e-v <= genericMax
	c.ok = e < n && text[e] == q && genericValue(text[v:e], pw)
	return c, true
}

// keywords end the key name of a generic secret. The run-together forms are
// listed because "apikey" has no boundary before "key".
var keywords = [][]byte{
	[]byte("password"), []byte("passwd"), []byte("pwd"), []byte("secret"), []byte("token"), []byte("key"),
	[]byte("apikey"), []byte("accesskey"), []byte("secretkey"), []byte("privatekey"), []byte("authtoken"),
	[]byte("accesstoken"),
}

// keyword reports the length of the keyword the key name ending at k ends
// with, 0 if none, and whether it names a password or secret (whose values
// may be letters only).
func keyword(text []byte, k int) (int, bool) {
	if k == 0 {
		return 0, false
	}
	if last := text[k-1] | 0x20; last != 'd' && last != 't' && last != 'n' && last != 'y' {
		return 0, false
	}
	for _, kw := range keywords {
		j := k - len(kw)
		if j < 0 || !bytes.EqualFold(text[j:k], kw) {
			continue
		}
		if j > 0 {
			prev, first := text[j-1], text[j]
			letter := prev|0x20 >= 'a' && prev|0x20 <= 'z'
			camel := first >= 'A' && first <= 'Z' && (prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9')
			if letter && !camel {
				continue
			}
		}
		return len(kw), kw[0] == 'p' || string(kw) == "secret"
	}
	return 0, false
}

// foldKeyName is the key name ending at k (at most keyLookback bytes
// back) lower-cased, without '_', '-' and '.', in buf.
func foldKeyName(text []byte, k int, buf *[keyLookback]byte) []byte {
	m := len(buf)
	for j := k - 1; j >= 0 && k-j <= keyLookback && keyName[text[j]] && m > 0; j-- {
		if c := text[j]; c != '_' && c != '-' && c != '.' {
			m--
			buf[m] = c | 0x20
		}
	}
	return buf[m:]
}

// awsSecretKey reports whether the key name ending at k names an AWS secret
// access key: ignoring case, '_', '-' and '.', it ends in
// "secretaccesskey", or mentions "aws" and ends in "secretkey" or "secret".
func awsSecretKey(text []byte, k int) bool {
	var buf [keyLookback]byte
	s := foldKeyName(text, k, &buf)
	return bytes.HasSuffix(s, []byte("secretaccesskey")) ||
		bytes.Contains(s, []byte("aws")) && (bytes.HasSuffix(s, []byte("secretkey")) || bytes.HasSuffix(s, []byte("secret")))
}

func allIn(b []byte, cls *[256]bool) bool {
	for _, c := range b {
		if !cls[c] {
			return false
		}
	}
	return true
}

// placeholders mark values that are examples or templates, not secrets.
var placeholders = [][]byte{
	[]byte("xxxx"), []byte("****"), []byte("...."), []byte("example"), []byte("changeme"),
	[]byte("change_me"), []byte("change-me"), []byte("placeholder"), []byte("dummy"), []byte("redacted"),
	[]byte("sample"), []byte("your"), []byte("replace"), []byte("insert"), []byte("${"), []byte("{{"),
	[]byte("$("), []byte("%s"), []byte("%("), []byte("://"), []byte("0000000"),
}

// randomValue reports whether a generic value looks like a secret: not a
// placeholder, variable, path, number, identifier or UUID, and with enough
// entropy. Values without digits count only for password-like keys, and
// only mixed-case ones that are not paths or host names.
func randomValue(v []byte, pw bool) bool {
	if v[0] == '$' || v[0] == '%' || v[0] == '/' || v[0] == '~' || v[0] == '.' || v[0] == '@' || v[0] == '&' || v[0] == '*' {
		return false
	}
	var lower [genericMax]byte
	l := lower[:len(v)]
	var up, low, dig, dot, slash bool
	for i, c := range v {
		l[i] = c
		switch {
		case c >= 'A' && c <= 'Z':
			up = true
			l[i] = c | 0x20
		case c >= 'a' && c <= 'z':
			low = true
		case c >= '0' && c <= '9':
			dig = true
		case c == '_' || c == '-':
		case c == '.':
			dot = true
		case c == '/':
			slash = true
		}
	}
	for _, p := range placeholders {
		if bytes.Contains(l, p) {
			return false
		}
	}
	switch {
	case !up && !low: // digits (and separators) only: ids, numbers, dates
		return false
	case !dig && (!pw || dot || slash || !up || !low): // identifiers, paths, host names, words
		return false
	case placeholderBody(v):
		return false
	case detect.IsUUID(v):
		return false
	}
	min := 3.0
	if len(v) >= 20 {
		min = 3.3
	}
	return entropy(v) >= min
}

// entropy is the Shannon entropy of b in bits per byte.
func entropy(b []byte) float64 {
	var counts [256]uint16
	for _, c := range b {
		counts[c]++
	}
	var h float64
	n := float64(len(b))
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
