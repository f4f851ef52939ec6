package pii

import (
	"bytes"

	"golang.org/x/net/publicsuffix"

	"github.com/warden-llm/warden/safety/detect"
)

const (
	maxLocal     = 64  // RFC 5321 local-part limit
	maxDomain    = 253 // RFC 1035 name limit, without the trailing dot
	maxDomainRun = maxDomain + 8
)

var emailClass = func() (t [256]bool) {
	for c := range t {
		t[c] = class[c]&cWord != 0
	}
	for _, c := range []byte("._%+-@") {
		t[c] = true
	}
	return t
}()

// Email finds addresses local@domain whose domain ends in an ICANN public
// suffix and has a registrable label in front of it, so foo@bar,
// user@localhost, a@b.c and user@example.invalid do not match.
//
// A candidate is a maximal run of [A-Za-z0-9._%+@-] with exactly one '@';
// the whole run must be the address, except trailing dots (sentence ends),
// which stay outside the span. Internationalised addresses are not
// recognised. Obfuscated spellings ("john [at] example [dot] com",
// "alice%40example.com", "alice&#64;example.com") are found too, under
// detector "email-obfuscated".
type Email struct{}

// NewEmail returns the email detector.
func NewEmail() detect.Detector { return Email{} }

// Category implements detect.Detector.
func (Email) Category() string { return CategoryEmail }

// Find implements detect.Detector: plain addresses, then obfuscated ones
// (see email_obf.go), merged in order.
func (Email) Find(text []byte, from int, report func(detect.Match)) {
	var arr [16]detect.Match
	plain := arr[:0]
	findPlain(text, from, func(m detect.Match) { plain = append(plain, m) })
	last := -1
	emit := func(m detect.Match) {
		if m.Start >= last {
			report(m)
			last = m.End
		}
	}
	findObfuscated(text, from, func(m detect.Match) {
		for len(plain) > 0 && plain[0].Start <= m.Start {
			emit(plain[0])
			plain = plain[1:]
		}
		emit(m)
	})
	for _, m := range plain {
		emit(m)
	}
}

func findPlain(text []byte, from int, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		k := bytes.IndexByte(text[pos:], '@')
		if k < 0 {
			return
		}
		at := pos + k
		r := at
		for r > 0 && emailClass[text[r-1]] && at-r <= maxLocal {
			r--
		}
		e := at + 1
		for e < len(text) && emailClass[text[e]] {
			e++
		}
		pos = e
		if r < from || at-r > maxLocal || (r > 0 && emailClass[text[r-1]]) || e-at-1 > maxDomainRun {
			continue
		}
		if end := emailAt(text, r, at, e); end > 0 {
			report(detect.Match{Start: r, End: end, Category: CategoryEmail, Detector: "email"})
		}
	}
}

// emailAt checks the run text[r:e] with its '@' at at and returns the end
// of the address, or 0.
func emailAt(text []byte, r, at, e int) int {
	if !endOK(text, e) || at == r {
		return 0
	}
	local := text[r:at]
	if local[0] == '.' || local[len(local)-1] == '.' || bytes.Contains(local, []byte("..")) {
		return 0
	}
	end := e
	for end > at+1 && text[end-1] == '.' {
		end--
	}
	dom := text[at+1 : end]
	if len(dom) == 0 || len(dom) > maxDomain {
		return 0
	}
	var buf [maxDomain]byte
	lab, dots := 0, 0
	for i, c := range dom {
		switch {
		case c == '.':
			if lab == 0 || dom[i-1] == '-' {
				return 0
			}
			lab = 0
			dots++
		case isWord(c) && c != '_', c == '-' && lab > 0:
			lab++
			if lab > 63 {
				return 0
			}
		default: // '@', '%', '+', '_', or '-' starting a label
			return 0
		}
		buf[i] = lower(c)
	}
	if dots == 0 || lab == 0 || dom[len(dom)-1] == '-' {
		return 0
	}
	// The top-level label must not be numeric: lodash@4.17.21 is a package.
	tld := buf[len(dom)-lab : len(dom)]
	if isDigit(tld[0]) || isDigit(tld[len(tld)-1]) {
		return 0
	}
	name := string(buf[:len(dom)])
	suffix, icann := publicsuffix.PublicSuffix(name)
	if !icann || len(suffix) >= len(name) {
		return 0
	}
	return end
}

// Hold implements detect.Detector: a trailing run of address characters is
// held while it could still become an address, and so is an obfuscated
// address that may still grow.
func (Email) Hold(text []byte) int {
	return min(max(holdPlain(text), holdObfuscated(text)), detect.MaxHold)
}

func holdPlain(text []byte) int {
	r, ats := len(text), 0
	at := -1
	for r > 0 && emailClass[text[r-1]] {
		r--
		if text[r] == '@' {
			ats++
			at = r
		}
		if len(text)-r > maxLocal+1+maxDomainRun {
			return 0
		}
	}
	switch {
	case r == len(text), ats > 1:
		return 0
	case ats == 0 && len(text)-r > maxLocal:
		return 0
	case ats == 1 && (at-r > maxLocal || len(text)-at-1 > maxDomainRun):
		return 0
	}
	return len(text) - r
}
