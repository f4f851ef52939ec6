package pii

import "github.com/warden-llm/warden/safety/detect"

// ibanLen holds the IBAN length of each country that issues them (the
// SWIFT IBAN registry): all SEPA countries and the common others.
var ibanLen = map[[2]byte]int{}

func init() {
	for cc, n := range map[string]int{
		"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
		"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
		"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
		"GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
		"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
		"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
		"NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
		"RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
		"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
	} {
		ibanLen[[2]byte{cc[0], cc[1]}] = n
	}
}

// maxIBAN is the longest IBAN in bytes when written in groups of four.
const maxIBAN = 34 + 8

// IBAN finds international bank account numbers in upper case: a country
// code from the registry, two check digits and the account part, either
// unbroken or in groups of four joined by single spaces, dashes, dots or
// slashes, one kind throughout (the last group may be shorter), exactly as long as the country's IBANs, with the ISO
// 7064 mod-97 checksum equal to 1. Lower-case IBANs are not recognised.
type IBAN struct{}

// NewIBAN returns the iban detector.
func NewIBAN() detect.Detector { return IBAN{} }

// Category implements detect.Detector.
func (IBAN) Category() string { return CategoryIBAN }

func ibanChar(c byte) bool { return isDigit(c) || isUpper(c) }

// ibanSep reports the separators an IBAN's groups may be joined by (one
// kind per IBAN); a no-break space reads as a space in the filter's view.
func ibanSep(c byte) bool { return c == ' ' || c == '-' || c == '.' || c == '/' }

// Find implements detect.Detector.
func (IBAN) Find(text []byte, from int, report func(detect.Match)) {
	findIBANs(text, from, scanned(text), report)
}

// FindDigits implements detect.DigitFinder.
func (IBAN) FindDigits(text []byte, from int, digits *detect.Digits, report func(detect.Match)) {
	findIBANs(text, from, digits, report)
}

func findIBANs[S digitSource](text []byte, from int, src S, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		d := src.Next(pos)
		if d < 0 {
			return
		}
		pos = d + 1
		s := d - 2
		if s < from || !isUpper(text[s]) || !isUpper(text[s+1]) || d+1 >= len(text) || !isDigit(text[d+1]) ||
			(s > 0 && isWord(text[s-1])) {
			if d > 0 && isLetter(text[d-1]) {
				for pos < len(text) && isWord(text[pos]) {
					pos++ // no IBAN starts inside a word
				}
			} else {
				for pos < len(text) && isDigit(text[pos]) {
					pos++ // nor after a digit
				}
			}
			continue
		}
		if e, ok := ibanAt(text, s); ok {
			report(detect.Match{Start: s, End: e, Category: CategoryIBAN, Detector: "iban-mod97"})
			pos = e
		}
	}
}

// ibanScan reads an IBAN written from text[s] and returns where it stops,
// the number of IBAN characters read, the country's length (0 if the
// country is unknown), and whether what it read can still be (the start
// of) an IBAN.
func ibanScan(text []byte, s int) (end, chars, want int, ok bool) {
	i := s
	for ; i < len(text) && i < s+4; i++ {
		c := text[i]
		if (i < s+2 && !isUpper(c)) || (i >= s+2 && !isDigit(c)) {
			return i, i - s, 0, false
		}
	}
	if i-s < 2 {
		return i, i - s, 0, true
	}
	want = ibanLen[[2]byte{text[s], text[s+1]}]
	if want == 0 {
		return i, i - s, 0, false
	}
	chars = i - s
	if chars < 4 || i == len(text) {
		return i, chars, want, true
	}
	if sep := text[i]; ibanSep(sep) { // grouped
		for chars < want {
			if i == len(text) {
				return i, chars, want, true
			}
			if text[i] != sep || (chars-4)%4 != 0 {
				return i, chars, want, false
			}
			i++
			g := 0
			for i < len(text) && g < 4 && chars < want && ibanChar(text[i]) {
				i++
				g++
				chars++
			}
			if g == 0 {
				return i, chars, want, i == len(text)
			}
			if g < 4 && i < len(text) && chars < want {
				return i, chars, want, false
			}
		}
	} else {
		for i < len(text) && chars < want && ibanChar(text[i]) {
			i++
			chars++
		}
	}
	if chars < want {
		return i, chars, want, i == len(text)
	}
	return i, chars, want, true
}

// ibanAt checks for an IBAN starting at text[s] and returns its end.
func ibanAt(text []byte, s int) (int, bool) {
	e, chars, want, ok := ibanScan(text, s)
	if !ok || want == 0 || chars != want || !endOK(text, e) {
		return 0, false
	}
	// Mod 97 of the digits of chars 5.. then 1..4, letters as 10..35.
	rem := 0
	add := func(c byte) {
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range text[s+4 : e] {
		if ibanChar(c) {
			add(c)
		}
	}
	for _, c := range text[s : s+4] {
		add(c)
	}
	return e, rem == 1
}

// Hold implements detect.Detector: it holds from the earliest position in
// the last maxIBAN bytes where an IBAN could start and still be unfinished
// or lack its right boundary.
func (IBAN) Hold(text []byte) int {
	for s := max(0, len(text)-maxIBAN-1); s < len(text); s++ {
		if !isUpper(text[s]) || (s > 0 && isWord(text[s-1])) {
			continue
		}
		if e, _, _, ok := ibanScan(text, s); ok && e == len(text) {
			return len(text) - s
		}
	}
	return 0
}
