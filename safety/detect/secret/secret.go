// Package secret finds credentials in text: cloud and SaaS API keys with a
// recognisable prefix, PEM private keys, JWTs, and generic
// "password = value" assignments whose value looks random. The rules follow
// gitleaks in spirit but are hand-written checks at anchor bytes rather
// than regular expressions: scan looks for a handful of rare bytes ('A',
// 'J', '_', '-', '.', '=', ':'), and each rule looks at a small window
// around its anchor.
package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"

	"github.com/warden-llm/warden/safety/detect"
)

// Category is the policy name of everything this package reports.
const Category = "secret"

const (
	// genericMin and genericMax bound a generic secret value.
	genericMin, genericMax = 12, 128
	// jwtMax bounds a JWT; longer runs are not reported, so that a stream
	// never holds more than detect.MaxHold for one.
	jwtMax = detect.MaxHold - 1
	// opGap bounds how far after an assignment operator a value may start
	// (spaces and a quote); keyLookback bounds how far before the operator
	// its key name is read. Both keep the key within detect.Context of the
	// value.
	opGap, keyLookback = 5, 40
)

// Character classes.
var (
	alnum    = class("A-Za-z0-9")
	word     = class("A-Za-z0-9_")   // \w: AWS, GitHub, Stripe
	dashWord = class("A-Za-z0-9_-")  // Google, GitLab, OpenAI, Anthropic
	slackTok = class("A-Za-z0-9-")   // xox?- tokens
	hookPath = class("A-Za-z0-9_/+") // webhook path
	jwtChar  = class("A-Za-z0-9_.-") // base64url parts and dots
	b64Std   = class("A-Za-z0-9+/")  // AWS secret key
	b64Pad   = class("A-Za-z0-9+/=") // AWS Bedrock key
	keyName  = class("A-Za-z0-9_.-")
	// value holds the characters of a generic secret value: printable
	// ASCII except quotes, brackets, separators and backslash.
	value = func() (t [256]bool) {
		for b := 0x21; b < 0x7F; b++ {
			t[b] = true
		}
		for _, b := range []byte("\"'`,;:<>(){}[]\\") {
			t[b] = false
		}
		return t
	}()
)

// class builds a byte table from a list of bytes and a-b ranges; a '-' that
// is last or escaped with a backslash stands for itself.
func class(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			t[s[i]] = true
			continue
		}
		if i+2 < len(s) && s[i+1] == '-' {
			for b := int(c); b <= int(s[i+2]); b++ {
				t[b] = true
			}
			i += 2
			continue
		}
		t[c] = true
	}
	return t
}

// prefixes are the fixed starts of token rules. A text ending in part of
// one (after a boundary) is held, since the rest may follow.
var prefixes = []struct {
	s     string
	bound *[256]bool
}{
	{"AKIA", &word}, {"ASIA", &word}, {"ABIA", &word}, {"ACCA", &word}, {"AIza", &dashWord},
	{"ghp_", &word}, {"gho_", &word}, {"ghu_", &word}, {"ghs_", &word}, {"ghr_", &word},
	{"github_pat_", &word}, {"glpat-", &dashWord}, {"glft-", &dashWord}, {"glimt-", &dashWord},
	{"glrt-", &dashWord}, {"gldt-", &dashWord}, {"glptt-", &dashWord}, {"GR1348941", &dashWord},
	{"xoxb-", &slackTok}, {"xoxp-", &slackTok}, {"xoxa-", &slackTok}, {"xoxr-", &slackTok}, {"xoxs-", &slackTok},
	{"xoxe-", &slackTok}, {"xoxe.xoxp-", &slackTok}, {"xoxe.xoxb-", &slackTok},
	{"sk-ant-", &dashWord}, {"sk_live_", &word}, {"rk_live_", &word}, {"ABSK", &b64Std},
	{"eyJ", &jwtChar}, {"-----BEGIN ", nil}, {"hooks.slack.com/services/", &alnum},
	{"hooks.slack.com/workflows/", &alnum}, {"hooks.slack.com/triggers/", &alnum},
}

type detector struct{}

// New returns the secret detector. It has no options. Detector names:
// "aws-access-key", "aws-secret-key", "aws-bedrock-key", "github-token",
// "gitlab-token" (personal, deploy, feed, incoming-mail, pipeline-trigger
// and runner tokens), "slack-token", "slack-webhook", "openai-key",
// "anthropic-key", "stripe-key", "google-api-key", "private-key", "jwt",
// "url-credential" (the user:password of scheme://user:password@host) and
// "generic-secret".
//
// Placeholders and documentation keys are not reported: published sample
// keys (AKIAIOSFODNN7EXAMPLE and the like), bodies holding EXAMPLE or
// xxxx, runs of one character or of ascending ones, and bodies with too
// few distinct characters to be random; nor are generic values under key
// names that are not secrets (public_key, foreignKey, csrf_token,
// token_type, max_tokens…).
//
// Where candidates overlap, the one starting first wins, and at the same
// start a specific rule beats generic-secret.
func New() detect.Detector { return detector{} }

func (detector) Category() string { return Category }

// A cand is one rule's verdict at one place, taking the end of text as the
// end of input: ok says it is a match, open that more text could change it.
type cand struct {
	start, end int
	name       string
	generic    bool
	ok, open   bool
}

func (detector) Find(text []byte, from int, report func(detect.Match)) {
	var buf [16]cand
	cs := scan(text, from, max(0, from-opGap-2), buf[:0])
	slices.SortStableFunc(cs, func(a, b cand) int {
		if a.start != b.start {
			return a.start - b.start
		}
		if a.generic != b.generic {
			if a.generic {
				return 1
			}
			return -1
		}
		return b.end - a.end
	})
	last := 0
	for _, c := range cs {
		if !c.ok || c.start < last {
			continue
		}
		report(detect.Match{Start: c.start, End: c.end, Category: Category, Detector: c.name})
		last = c.end
	}
}

// Hold keeps a trailing token that a rule is still deciding (a key whose
// run of characters reaches the end, a private key block waiting for its
// END line, a generic value), and a trailing part of a rule's prefix.
func (detector) Hold(text []byte) int {
	n := len(text)
	h := prefixHold(text)
	// Every rule but private-key reads a run of printable ASCII, so an
	// open candidate starts in the trailing run (or, for a generic value,
	// just before it).
	r := n
	for r > 0 && n-r <= detect.MaxHold+8 && text[r-1] > 0x20 && text[r-1] < 0x7F {
		r--
	}
	var buf [8]cand
	for _, c := range scan(text, r, max(0, r-opGap-2), buf[:0]) {
		if c.open {
			h = max(h, n-c.start)
		}
	}
	tail := max(0, n-detect.MaxHold)
	if k := lastBegin(text[tail:]); k >= 0 {
		if c := privateKey(text, tail+k); c.open {
			h = max(h, n-c.start)
		}
	}
	return min(h, detect.MaxHold)
}

// A partPrefix is a proper start prefixes[i].s[:k] of a prefix.
type partPrefix struct{ i, k int }

// prefixEnds lists, by last byte, the proper starts of the prefixes that
// end with it, longest first.
var prefixEnds = func() (t [256][]partPrefix) {
	for i, p := range prefixes {
		for k := 1; k < len(p.s); k++ {
			t[p.s[k-1]] = append(t[p.s[k-1]], partPrefix{i, k})
		}
	}
	for c := range t {
		slices.SortStableFunc(t[c], func(a, b partPrefix) int { return b.k - a.k })
	}
	return t
}()

// prefixHold returns the length of the longest trailing part of a rule's
// prefix (after a boundary) at the end of text. Such a part ends with the
// text's last byte, so only the parts ending with it are looked at.
func prefixHold(text []byte) int {
	n := len(text)
	if n == 0 {
		return 0
	}
	for _, pp := range prefixEnds[text[n-1]] {
		p := &prefixes[pp.i]
		if pp.k <= n && string(text[n-pp.k:]) == p.s[:pp.k] && (p.bound == nil || n-pp.k == 0 || !p.bound[text[n-pp.k-1]]) {
			return pp.k
		}
	}
	return 0
}

// lastBegin is bytes.LastIndex(t, "-----BEGIN ") by way of the rare 'B'.
func lastBegin(t []byte) int {
	const begin = "-----BEGIN "
	for e := len(t); ; {
		j := bytes.LastIndexByte(t[:e], 'B')
		if j < 0 {
			return -1
		}
		if j >= 5 && j+6 <= len(t) && string(t[j-5:j+6]) == begin {
			return j - 5
		}
		e = j
	}
}

// check runs the rules anchored at text[i].
func check(text []byte, i int, add func(cand)) {
	n := len(text)
	{
		switch text[i] {
		case 'A':
			if i+4 <= n {
				switch string(text[i : i+4]) {
				case "AKIA", "ASIA", "ABIA", "ACCA":
					add(token(text, i, 4, &word, 16, 16, "aws-access-key", awsBody))
				case "AIza":
					add(token(text, i, 4, &dashWord, 35, 35, "google-api-key", nil))
				case "ABSK":
					add(tokenBound(text, i, 4, &b64Pad, &b64Std, 100, 300, "aws-bedrock-key", bedrockBody))
				}
			}
		case 'G':
			if hasPrefix(text[i:], "GR1348941") {
				add(token(text, i, 9, &dashWord, 20, 64, "gitlab-token", nil))
			}
		case ',':
			if c, ok := callArgument(text, i); ok {
				add(c)
			}
		case 'J':
			if i >= 2 && text[i-2] == 'e' && text[i-1] == 'y' {
				add(jwt(text, i-2))
			}
		case '_':
			switch {
			case i >= 3 && text[i-3] == 'g' && text[i-2] == 'h' && bytes.IndexByte([]byte("pousr"), text[i-1]) >= 0:
				add(token(text, i-3, 4, &word, 36, 36, "github-token", alnumBody))
			case i >= 6 && string(text[i-6:i]) == "github" && hasPrefix(text[i:], "_pat_"):
				add(token(text, i-6, 11, &word, 82, 82, "github-token", nil))
			case i >= 2 && (text[i-2] == 's' || text[i-2] == 'r') && text[i-1] == 'k' && hasPrefix(text[i:], "_live_"):
				add(token(text, i-2, 8, &word, 24, 99, "stripe-key", alnumBody))
			}
		case '-':
			switch {
			case i >= 2 && text[i-2] == 's' && text[i-1] == 'k':
				if hasPrefix(text[i+1:], "ant-") {
					add(token(text, i-2, 7, &dashWord, 32, 200, "anthropic-key", randomBody))
				} else {
					add(token(text, i-2, 3, &dashWord, 20, 200, "openai-key", openAIBody))
				}
			case i >= 4 && text[i-1] == 't' && gitlabPrefixLen(text, i) > 0:
				p := gitlabPrefixLen(text, i)
				add(token(text, i+1-p, p, &dashWord, 20, 64, "gitlab-token", nil))
			case i >= 4 && string(text[i-4:i-1]) == "xox" && bytes.IndexByte([]byte("bparse"), text[i-1]) >= 0:
				if i >= 9 && text[i-1] != 'e' && string(text[i-9:i-3]) == "xoxe.x" {
					// A Slack configuration token: xoxe.xoxp-1-…
					add(token(text, i-9, 10, &slackTok, 10, 200, "slack-token", slackBody))
				} else {
					add(token(text, i-4, 5, &slackTok, 10, 200, "slack-token", slackBody))
				}
			case hasPrefix(text[i:], "-----BEGIN "):
				add(privateKey(text, i))
			}
		case '.':
			if i >= 5 && string(text[i-5:i]) == "hooks" && hasPrefix(text[i:], ".slack.com/") {
				for _, kind := range []string{"services/", "workflows/", "triggers/"} {
					if hasPrefix(text[i+11:], kind) {
						add(tokenBound(text, i-5, 16+len(kind), &hookPath, &alnum, 20, 120, "slack-webhook", hookBody))
					}
				}
			}
		case '=', ':':
			if text[i] == ':' && (i+1 == n || text[i+1] == '/') {
				add(urlCredential(text, i))
			}
			if c, ok := assignment(text, i); ok {
				add(c)
			}
		}
	}
}

// hasPrefix is bytes.HasPrefix for a string prefix, without converting it.
func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// token evaluates a prefixed token at s: the prefix (plen bytes) followed by
// a run of cls whose length is in [lo, hi], not preceded or followed by a
// cls byte, and whose body passes check.
func token(text []byte, s, plen int, cls *[256]bool, lo, hi int, name string, check func([]byte) bool) cand {
	return tokenBound(text, s, plen, cls, cls, lo, hi, name, check)
}

// tokenBound is token with a separate class for the byte before s.
func tokenBound(text []byte, s, plen int, cls, bound *[256]bool, lo, hi int, name string, check func([]byte) bool) cand {
	n := len(text)
	c := cand{start: s, name: name}
	if s > 0 && bound[text[s-1]] {
		return c
	}
	e := s + plen
	for e < n && e-s-plen <= hi && cls[text[e]] {
		e++
	}
	body := e - s - plen
	c.end = e
	c.open = e == n && body <= hi
	c.ok = body >= lo && body <= hi && (check == nil || check(text[s+plen:e])) &&
		!placeholderBody(text[s+plen:e]) && !isSample(text[s:e])
	return c
}

// gitlabPrefixes are GitLab's token prefixes before their '-': personal
// access, deploy, feed, incoming mail, pipeline trigger and runner tokens.
var gitlabPrefixes = []string{"glpat", "gldt", "glft", "glimt", "glptt", "glrt"}

// gitlabPrefixLen returns the length, with the '-' at i, of the GitLab
// prefix ending at i, or 0.
func gitlabPrefixLen(text []byte, i int) int {
	for _, p := range gitlabPrefixes {
		if i >= len(p) && string(text[i-len(p):i]) == p {
			return len(p) + 1
		}
	}
	return 0
}

// bedrockBody wants what randomBody wants of a long base64 key.
func bedrockBody(b []byte) bool {
	return randomBody(bytes.TrimRight(b, "="))
}

func awsBody(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

func alnumBody(b []byte) bool {
	for _, c := range b {
		if !alnum[c] {
			return false
		}
	}
	return true
}

// randomBody wants a mix of upper case, lower case and digits with high
// entropy, as generated keys have and words joined by dashes do not.
func randomBody(b []byte) bool {
	var up, low, dig bool
	for _, c := range b {
		up = up || c >= 'A' && c <= 'Z'
		low = low || c >= 'a' && c <= 'z'
		dig = dig || c >= '0' && c <= '9'
	}
	return up && low && dig && entropy(b) >= 3.5
}

// openAIBody rejects "sk-ant-" (its own rule) and what randomBody rejects,
// such as "sk-learn-…" prose.
func openAIBody(b []byte) bool {
	return !hasPrefix(b, "ant-") && randomBody(b)
}

func slackBody(b []byte) bool {
	digits, dashes := 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '-':
			dashes++
		}
	}
	return digits >= 10 && dashes >= 1
}

// hookBody wants T…/B…/secret, or (workflow and trigger URLs, and
// services URLs written as one run) 40 or more random characters.
func hookBody(b []byte) bool {
	parts := bytes.Split(b, []byte("/"))
	if len(parts) == 3 && len(parts[0]) >= 8 && parts[0][0] == 'T' &&
		len(parts[1]) >= 8 && parts[1][0] == 'B' && len(parts[2]) >= 16 && alnumBody(parts[2]) {
		return true
	}
	return len(b) >= 40 && entropy(b) >= 4
}

// jwt evaluates a JWT at s: three dot-separated base64url parts, the first
// two starting with "eyJ" ('{"'), the header decoding to a JSON object.
// The signature may be empty (alg none); one trailing dot, ending a
// sentence, is left out.
func jwt(text []byte, s int) cand {
	n := len(text)
	c := cand{start: s, name: "jwt"}
	if s > 0 && jwtChar[text[s-1]] {
		return c
	}
	e := s
	for e < n && e-s <= jwtMax && jwtChar[text[e]] {
		e++
	}
	c.open = e == n && e-s <= jwtMax
	if e-s > jwtMax {
		return c
	}
	run := text[s:e]
	if bytes.Count(run, []byte(".")) == 3 && run[len(run)-1] == '.' {
		run = run[:len(run)-1]
	}
	parts := bytes.Split(run, []byte("."))
	if len(parts) != 3 || len(parts[0]) < 10 || len(parts[0]) > 1024 || len(parts[1]) < 4 ||
		!hasPrefix(parts[1], "eyJ") {
		return c
	}
	var hdr [768]byte
	m, err := base64.RawURLEncoding.Decode(hdr[:], parts[0])
	if err != nil || !json.Valid(hdr[:m]) || hdr[0] != '{' {
		return c
	}
	c.end = s + len(run)
	c.ok = !isSample(run)
	return c
}

// privateKey evaluates a PEM private key block at s ("-----BEGIN "): the
// header with a label containing PRIVATE KEY, a body of base64 lines (and
// Proc-Type style headers), and the END line. The whole block must fit in
// detect.MaxHold; when no END line comes within that, or the body is
// broken by other text first, the match runs from the header to the last
// base64 character of the body. A body needs 32 base64 characters.
func privateKey(text []byte, s int) cand {
	c := cand{start: s, name: "private-key"}
	lim := s + detect.MaxHold
	t := text[:min(len(text), lim)]
	n := len(t)
	eof := len(text) <= lim // the text may still grow within the limit
	label := func(j int) (end int, open bool) {
		k := j
		for k < n && k-j < 64 && (t[k] >= 'A' && t[k] <= 'Z' || t[k] >= '0' && t[k] <= '9' || t[k] == ' ') {
			k++
		}
		if k == n {
			return -1, eof && k-j < 64
		}
		if !hasPrefix(t[k:], "-----") {
			return -1, eof && bytes.HasPrefix([]byte("-----"), t[k:])
		}
		if !bytes.Contains(t[j:k], []byte("PRIVATE KEY")) {
			return -1, false
		}
		return k + 5, false
	}
	hdr, open := label(s + 11)
	if hdr < 0 {
		c.open = open
		return c
	}
	// last is the end of the last line holding base64; a line broken by
	// other text does not count.
	b64, last, line := 0, hdr, -1
body:
	for m := hdr; ; m++ {
		if m >= n || t[m] == '\\' && m+1 == n {
			c.open = eof
			last = max(last, line)
			break
		}
		ch := t[m]
		if ch == '-' && (m+1 == n || t[m+1] == '-') {
			switch {
			case hasPrefix(t[m:], "-----END "):
				end, open := label(m + 9)
				if end >= 0 {
					c.end, c.ok, c.open = end, b64 >= 32, end == len(text)
					return c
				}
				c.open = open
			case bytes.HasPrefix([]byte("-----END "), t[m:]):
				c.open = eof
			}
			break body
		}
		switch {
		case b64Std[ch] || ch == '=':
			b64++
			line = m + 1
		case ch == '\\' && (t[m+1] == 'n' || t[m+1] == 'r'): // JSON-escaped PEM
			m++
			fallthrough
		case ch == '\n' || ch == '\r':
			last, line = max(last, line), -1
		case ch == ':' || ch == ',' || ch == '-': // Proc-Type: 4,ENCRYPTED
		case ch == ' ' && t[m-1] == ':':
		default:
			break body
		}
	}
	c.end, c.ok = last, b64 >= 32
	return c
}
