package pii

import (
	"bytes"
	"strings"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"

	"github.com/warden-llm/warden/safety/detect"
)

// maxPhone bounds a phone component in bytes, from its leading '+' or '('
// to its last digit: room for "+44 (0) 20 7946 0958" and a neighbour.
const maxPhone = 36

var phoneSep = func() (t [256]bool) {
	for _, c := range []byte(" -.()+") {
		t[c] = true
	}
	return t
}()

// Phone finds telephone numbers that phonenumbers considers valid.
//
// A component is a stretch of digits joined by gaps of one or two of
// " -.()+"; a gap that is not phone-like (two spaces, ". ", "--") splits
// it into candidates. A candidate needs 7–15 digits and the shape of a
// phone number: consistent separators, at most one (area) group in
// parentheses, no one-digit groups except a country code and the area code
// after it (+33 1 …), a trunk 0 or 1, or "(0)"; a last group of at least
// two digits; French-style pairs only after a trunk 0; and it must not
// read as a date, an IPv4 address, an ISBN-13, a decimal, an SSN
// (ddd-dd-dddd) or a dashed token (CVE-2024-12345). Left of it may not be
// a word character, '/', '#', '$', '£', '€' or similar.
//
// A number with a leading + (or "(+") must be valid for its country; any
// other must be valid when read as a national number of one of the
// configured regions. A bare run of digits with no separators and no +,
// and a national number of fewer than eight digits, count only after a
// word such as "phone", "tel" or "call" (within three words); any
// candidate after a word such as "order", "invoice", "isbn" or "id"
// (within two words) is rejected. A number with a country code that fails
// is retried without its last one or two space-separated groups, so
// "+1 415 555 2671 24" still yields the number.
type Phone struct {
	regions []string // one region per calling code, in configured order
	// cache maps digits to validity, direct-mapped; an entry is
	// key<<2 | valid<<1 | 1, so concurrent scans need no lock.
	cache *[1 << phoneCacheBits]atomic.Uint64
}

const phoneCacheBits = 12

// NewPhone returns the phone detector for the given region codes; nil or
// empty means DefaultRegions. Unknown region codes are ignored.
func NewPhone(regions []string) detect.Detector {
	if len(regions) == 0 {
		regions = DefaultRegions
	}
	p := &Phone{cache: new([1 << phoneCacheBits]atomic.Uint64)}
	seen := map[int]bool{}
	for _, r := range regions {
		r = strings.ToUpper(r)
		cc := phonenumbers.GetCountryCodeForRegion(r)
		if cc == 0 || seen[cc] {
			continue
		}
		seen[cc] = true
		p.regions = append(p.regions, r)
	}
	return p
}

// Category implements detect.Detector.
func (*Phone) Category() string { return CategoryPhone }

// firstDigit walks left from the digit at d over the component's digits
// and phone gaps and returns the component's first digit, or -1 when the
// component is longer than maxPhone.
func firstDigit(text []byte, d int) int {
	f := d
	for {
		for f > 0 && isDigit(text[f-1]) {
			f--
		}
		k := f
		for k > 0 && phoneSep[text[k-1]] && f-k < 3 {
			k--
		}
		if g := f - k; g == 0 || g == 3 || k == 0 || !isDigit(text[k-1]) {
			break
		}
		f = k
		if d-f > maxPhone {
			return -1
		}
	}
	if d-f > maxPhone {
		return -1
	}
	return f
}

// lastDigit walks right from the digit at d and returns the end of the
// component's last digit.
func lastDigit(text []byte, d int) int {
	e := d
	for {
		for e < len(text) && isDigit(text[e]) {
			e++
		}
		k := e
		for k < len(text) && phoneSep[text[k]] && k-e < 3 {
			k++
		}
		if g := k - e; g == 0 || g == 3 || k == len(text) || !isDigit(text[k]) {
			return e
		}
		e = k
	}
}

// leadStart extends a component's first digit by a directly preceding
// '+', '(' or "(+".
func leadStart(text []byte, f int) int {
	if f > 1 && text[f-1] == '+' && text[f-2] == '(' {
		return f - 2
	}
	if f > 0 && (text[f-1] == '+' || text[f-1] == '(') {
		return f - 1
	}
	return f
}

// Find implements detect.Detector.
func (p *Phone) Find(text []byte, from int, report func(detect.Match)) {
	findPhones(p, text, from, scanned(text), report)
}

// FindDigits implements detect.DigitFinder.
func (p *Phone) FindDigits(text []byte, from int, digits *detect.Digits, report func(detect.Match)) {
	findPhones(p, text, from, digits, report)
}

func findPhones[S digitSource](p *Phone, text []byte, from int, src S, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		d := src.NextWord(pos)
		if d < 0 {
			return
		}
		e := lastDigit(text, d)
		pos = e
		f := firstDigit(text, d)
		if f < 0 {
			continue
		}
		s := leadStart(text, f)
		if s < from || e-s > maxPhone || e-f < 7 {
			continue
		}
		p.component(text, s, e, report)
	}
}

// A phone group is a run of digits with the gap before it.
type phoneGroup struct {
	gs, s, e int // gap start, digits start, digits end
}

func (p *Phone) component(text []byte, s, e int, report func(detect.Match)) {
	var buf [maxPhone/2 + 2]phoneGroup
	gs := buf[:0]
	digits := 0
	for i := s; i < e; {
		g := i
		for !isDigit(text[i]) {
			i++
		}
		j := i
		for j < e && isDigit(text[j]) {
			j++
		}
		gs = append(gs, phoneGroup{g, i, j})
		digits += j - i
		i = j
	}
	if digits < 7 {
		return
	}
	// Split at gaps that do not occur inside phone numbers.
	for a := 0; a < len(gs); {
		b := a + 1
		for b < len(gs) && phoneGap(text[gs[b].gs:gs[b].s]) {
			b++
		}
		start := gs[a].s
		if a == 0 {
			start = s
		} else if c := text[gs[a].s-1]; c == '+' || c == '(' {
			start--
		}
		for n := b; n > a && n >= b-2; n-- {
			if n < b && (text[gs[n].gs] != ' ' || text[start] != '+' && text[start+1] != '+') {
				break // only a number with a country code has a known end
			}
			if p.candidate(text, start, gs[a:n], n == len(gs)) {
				report(detect.Match{Start: start, End: gs[n-1].e, Category: CategoryPhone, Detector: "phone"})
				break
			}
		}
		a = b
	}
}

// phoneGap reports whether a gap between digit groups is one a phone
// number uses: one separator, or a parenthesis with at most one space or
// dash beside it.
func phoneGap(g []byte) bool {
	switch string(g) {
	case " ", "-", ".", ")", "(", ") ", ")-", " (", "-(":
		return true
	}
	return false
}

var (
	phoneWords = newWordSet("phone", "tel", "telephone", "call", "mobile", "cell", "cellphone", "fax", "contact",
		"whatsapp", "sms", "text", "mob", "ph", "telefon", "telefono", "handy", "number", "dial", "ring", "reach", "tlf")
	notPhoneWords = newWordSet("isbn", "issn", "order", "invoice", "ref", "reference", "id", "serial", "tracking",
		"account", "acct", "sku", "ticket", "issue", "pr", "build", "version", "ver", "v", "amount", "total",
		"price", "usd", "eur", "gbp", "iban", "bic", "routing", "card", "visa", "ssn", "zip", "postcode",
		"timestamp", "ts", "epoch", "pid", "uid", "gid", "port", "hash", "sha", "commit", "case", "claim",
		"policy", "receipt", "transaction", "txn", "tx", "confirmation", "booking", "pnr", "doi", "pmid", "ean", "upc")
)

// candidate checks one candidate: gs are its groups, start its first byte
// (a '+' or '(' or the first digit); last says the candidate ends where
// the component does, so the byte after it is the right boundary.
func (p *Phone) candidate(text []byte, start int, gs []phoneGroup, last bool) bool {
	end := gs[len(gs)-1].e
	plus := text[start] == '+' || (text[start] == '(' && text[start+1] == '+')
	digits := 0
	var seps [256]bool
	opens, closes := 0, 0
	for i, g := range gs {
		n := g.e - g.s
		digits += n
		if i > 0 {
			gap := text[g.gs:g.s]
			for _, c := range gap {
				seps[c] = true
				switch c {
				case '(':
					opens++
				case ')':
					closes++
				}
			}
		}
		switch {
		case n > 1:
		case i == 0 && plus, i == 1 && plus && len(gs) > 2: // country code, then area code as in +33 1
		case i == 0 && (text[g.s] == '0' || text[g.s] == '1') && len(gs) > 1 && text[gs[1].gs] != '.':
		case text[g.s] == '0' && g.s > 0 && text[g.s-1] == '(' && g.e < end && text[g.e] == ')':
		default:
			return false
		}
	}
	if text[start] == '(' {
		opens++
	}
	if digits < 7 || digits > 15 || len(gs) > 7 || gs[len(gs)-1].e-gs[len(gs)-1].s < 2 {
		return false
	}
	if opens != closes || opens > 1 {
		return false
	}
	if opens == 1 {
		o := bytes.IndexByte(text[start:end], '(')
		c := bytes.IndexByte(text[start:end], ')')
		if c < o+2 || c > o+6 {
			return false // "()" or more than five digits in parentheses
		}
		for i, b := range text[start+o+1 : start+c] {
			if !isDigit(b) && (b != '+' || i > 0 || o != 0) {
				return false
			}
		}
	}
	if !plus && len(gs) >= 4 && text[gs[0].s] != '0' {
		pairs := true
		for _, g := range gs {
			pairs = pairs && g.e-g.s == 2
		}
		if pairs {
			return false // pairs are French style, which starts with the trunk 0
		}
	}
	if seps['.'] && (seps[' '] || seps['-'] || len(gs) < 3) {
		return false
	}
	if !plus && (len(gs) == 1 || digits < 8) && !p.keyword(text, start) {
		return false // bare digits or a local number: say it is a phone
	}
	if len(gs) == 3 && seps['-'] && gs[0].e-gs[0].s == 3 && gs[1].e-gs[1].s == 2 && gs[2].e-gs[2].s == 4 {
		return false // the shape of a US social security number
	}
	if len(gs) >= 3 && looksLikeDate(text, gs) {
		return false
	}
	if seps['.'] && len(gs) == 4 && gs[0].e-gs[0].s <= 3 && gs[1].e-gs[1].s <= 3 && gs[2].e-gs[2].s <= 3 && gs[3].e-gs[3].s <= 3 {
		return false // an IPv4 address
	}
	if digits == 13 {
		var pre [3]byte
		k := 0
		for _, g := range gs {
			for i := g.s; i < g.e && k < 3; i++ {
				pre[k] = text[i]
				k++
			}
		}
		if string(pre[:]) == "978" || string(pre[:]) == "979" {
			return false // ISBN-13
		}
	}
	if start > 0 {
		switch c := text[start-1]; {
		case isWord(c), strings.IndexByte("/#$@\\%&*^~`|", c) >= 0:
			return false
		case (c == '-' || c == '.') && start > 1 && isWord(text[start-2]):
			return false // a token such as CVE-2024-12345
		case c >= 0x80 && start >= 2 && (text[start-2] == 0xC2 && (c == 0xA3 || c == 0xA5)):
			return false // £ ¥
		case c == 0xAC && start >= 3 && text[start-3] == 0xE2 && text[start-2] == 0x82:
			return false // €
		}
	}
	if last {
		if !endOK(text, end) {
			return false
		}
		if end < len(text) && strings.IndexByte("/%@$", text[end]) >= 0 {
			return false
		}
	}
	if prevWordIn(text, start, 40, 2, notPhoneWords) {
		return false
	}
	return p.valid(text[start:end], plus)
}

// keyword reports whether a phone word precedes text[i] within three words.
func (p *Phone) keyword(text []byte, i int) bool {
	return prevWordIn(text, i, 40, 3, phoneWords)
}

// looksLikeDate reports whether the first three groups read as a date:
// yyyy-mm-dd, dd.mm.yyyy or mm/dd/yyyy with one separator throughout.
func looksLikeDate(text []byte, gs []phoneGroup) bool {
	if text[gs[1].gs] == '(' || gs[1].s-gs[1].gs != 1 || gs[2].s-gs[2].gs != 1 || text[gs[1].gs] != text[gs[2].gs] {
		return false
	}
	num := func(g phoneGroup) int {
		v := 0
		for _, c := range text[g.s:g.e] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	l0, l1, l2 := gs[0].e-gs[0].s, gs[1].e-gs[1].s, gs[2].e-gs[2].s
	a, b, c := num(gs[0]), num(gs[1]), num(gs[2])
	year := func(v int) bool { return 1900 <= v && v <= 2099 }
	day := func(v int) bool { return 1 <= v && v <= 31 }
	month := func(v int) bool { return 1 <= v && v <= 12 }
	switch {
	case l0 == 4 && l1 <= 2 && l2 <= 2:
		return year(a) && month(b) && day(c)
	case l0 <= 2 && l1 <= 2 && l2 == 4:
		return year(c) && (day(a) && month(b) || month(a) && day(b))
	}
	return false
}

// valid asks phonenumbers about s, which has only digits, separators and
// maybe a '+'. Parsing costs tens of microseconds (it runs many regular
// expressions), so answers are cached by digits: separators do not change
// what phonenumbers decides.
func (p *Phone) valid(s []byte, plus bool) bool {
	key, nd := uint64(0), uint64(0)
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			key = key*10 + uint64(s[i]-'0')
			nd++
		}
	}
	key = key<<5 | nd<<1 // at most 15 digits: 50 + 4 bits
	if plus {
		key |= 1
	}
	slot := &p.cache[(key*0x9E3779B97F4A7C15)>>(64-phoneCacheBits)]
	if e := slot.Load(); e>>2 == key {
		return e&2 != 0
	}
	ok := p.parse(string(s), plus) // the string only on a miss
	e := key<<2 | 1
	if ok {
		e |= 2
	}
	slot.Store(e)
	return ok
}

func (p *Phone) parse(s string, plus bool) bool {
	if plus {
		n, err := phonenumbers.Parse(s, phonenumbers.UNKNOWN_REGION)
		return err == nil && phonenumbers.IsValidNumber(n)
	}
	for _, r := range p.regions {
		n, err := phonenumbers.Parse(s, r)
		if err == nil && phonenumbers.IsValidNumber(n) {
			return true
		}
	}
	return false
}

// Hold implements detect.Detector: it holds a trailing component (with up
// to two trailing separators, which more digits could still join) while it
// is short enough to match, and a trailing '+' or '(' that could open one.
func (p *Phone) Hold(text []byte) int {
	n := len(text)
	h := 0
	if n > 0 && (text[n-1] == '+' || text[n-1] == '(') {
		h = 1
		if n > 1 && text[n-2] == '(' && text[n-1] == '+' {
			h = 2
		}
	}
	k := n
	for k > 0 && phoneSep[text[k-1]] && n-k < 3 {
		k--
	}
	if n-k == 3 || k == 0 || !isDigit(text[k-1]) {
		return h
	}
	f := firstDigit(text, k-1)
	if f < 0 {
		return h
	}
	s := leadStart(text, f)
	if k-s > maxPhone {
		return h
	}
	return max(h, n-s)
}
