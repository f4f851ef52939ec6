package pii

import "github.com/warden-llm/warden/safety/detect"

// CreditCard finds payment card numbers: 13–19 digits, either unbroken or
// in groups joined by one kind of separator in a card's
// grouping (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4, 4-4-5, or fours with a
// shorter last group; spaces, dashes, dots or slashes, and no-break
// spaces and fullwidth or other scripts' digits read through the
// filter's view), with a known issuer prefix of the right length for
// that issuer, and a valid Luhn check digit. A number that is part of a
// longer digit run, a word or a decimal is not a card.
//
// Issuers: Visa, Mastercard, American Express, Discover, JCB, Diners Club,
// UnionPay, Maestro, Mir and RuPay.
type CreditCard struct{}

// NewCreditCard returns the credit_card detector.
func NewCreditCard() detect.Detector { return CreditCard{} }

// Category implements detect.Detector.
func (CreditCard) Category() string { return CategoryCreditCard }

const maxCard = 19

// Find implements detect.Detector.
func (CreditCard) Find(text []byte, from int, report func(detect.Match)) {
	findCards(text, from, scanned(text), report)
}

// FindDigits implements detect.DigitFinder.
func (CreditCard) FindDigits(text []byte, from int, digits *detect.Digits, report func(detect.Match)) {
	findCards(text, from, digits, report)
}

func findCards[S digitSource](text []byte, from int, src S, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		d := src.NextWord(pos)
		if d < 0 {
			return
		}
		e := runEnd(text, d, cardSeps)
		pos = e
		f := runStart(text, d, 2*maxCard, cardSeps)
		if f >= from && e-f >= 13 && cardAt(text, f, e) {
			report(detect.Match{Start: f, End: e, Category: CategoryCreditCard, Detector: "luhn"})
			continue
		}
		// Unbroken numbers of card length joined by single spaces
		// ("4012888888881881 4111111111111111") are judged one by one: a
		// run holding such a group is never a card as a whole.
		if e-d < 13 {
			continue // no group that long
		}
		for g := d; g < e; {
			ge := g
			for ge < e && isDigit(text[ge]) {
				ge++
			}
			joined := g > 1 && cardSeps[text[g-1]] && isDigit(text[g-2])
			if ge-g >= 13 && g >= from && (!joined || text[g-1] == ' ') && (ge == e || text[ge] == ' ') && cardAt(text, g, ge) {
				report(detect.Match{Start: g, End: ge, Category: CategoryCreditCard, Detector: "luhn"})
			}
			g = ge + 1
		}
	}
}

func cardAt(text []byte, f, e int) bool {
	var buf [maxCard]byte
	n := 0
	for _, c := range text[f:e] {
		if isDigit(c) {
			if n == maxCard {
				return false
			}
			buf[n] = c - '0'
			n++
		}
	}
	if n < 13 || !runBounded(text, f, e) {
		return false
	}
	var g [5]int
	ng, sep, ok := runGroups(text, f, e, g[:])
	if !ok || (sep != 0 && !cardGrouping(g[:ng])) {
		return false
	}
	num := buf[:n]
	return cardIssuer(num) && luhn(num)
}

func cardGrouping(g []int) bool {
	switch {
	case len(g) == 3 && g[0] == 4 && g[1] == 6 && (g[2] == 5 || g[2] == 4):
		return true
	case len(g) == 3 && g[0] == 4 && g[1] == 4 && g[2] == 5:
		return true
	}
	for _, n := range g[:len(g)-1] {
		if n != 4 {
			return false
		}
	}
	return g[len(g)-1] <= 4
}

// cardIssuer reports whether the digits (values 0–9) start with a known
// issuer prefix and have a length that issuer uses.
func cardIssuer(d []byte) bool {
	pre := func(k int) int {
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c)
		}
		return v
	}
	n := len(d)
	p2, p3, p4, p6 := pre(2), pre(3), pre(4), pre(6)
	in := func(v, lo, hi int) bool { return lo <= v && v <= hi }
	switch {
	case d[0] == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case in(p2, 51, 55) || in(p4, 2221, 2720): // Mastercard
		return n == 16
	case in(p4, 2200, 2204): // Mir
		return n >= 16
	case p4 == 6011 || in(p3, 644, 649) || p2 == 65 || in(p6, 622126, 622925): // Discover
		return n >= 16
	case p2 == 62: // UnionPay
		return n >= 16
	case in(p4, 3528, 3589): // JCB
		return n >= 16
	case in(p3, 300, 305) || p3 == 309 || p2 == 36 || p2 == 38 || p2 == 39: // Diners Club
		return n >= 14
	case p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 || p4 == 6304 || in(p4, 6759, 6763): // Maestro
		return n >= 13
	case p2 == 60 || p2 == 81 || p2 == 82 || p3 == 508: // RuPay
		return n == 16
	}
	return false
}

// luhn checks the Luhn (mod 10) check digit of digits with values 0–9.
func luhn(d []byte) bool {
	sum := 0
	for i := range d {
		v := int(d[len(d)-1-i])
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// Hold implements detect.Detector: the trailing run while it could still
// be a card, and the trailing group of a longer run while it could still
// be one on its own (see Find).
func (CreditCard) Hold(text []byte) int {
	h := runHold(text, maxCard, cardSeps)
	n := len(text)
	k := n
	if k > 0 && (cardSeps[text[k-1]] || text[k-1] == '.' || text[k-1] == ',') {
		k--
	}
	g := k
	for g > 0 && k-g <= maxCard && isDigit(text[g-1]) {
		g--
	}
	if g < k && k-g <= maxCard && g > 1 && text[g-1] == ' ' && isDigit(text[g-2]) {
		h = max(h, n-g)
	}
	return h
}
