package pii

import "github.com/warden-llm/warden/safety/detect"

// SSN finds US social security numbers written ddd-dd-dddd, ddd dd dddd
// or ddd.dd.dddd (dashed or dotted ones joined by single spaces count one
// by one), and nine bare digits only when one of the four words before
// them is a context word public PII test suites use: "ssn", "ssns", "ss",
// "soc", "social", "security" or "ssid" ("SSN: 123456789",
// "SSN#123456789", "ss# 123456789", "social security number 123456789").
// Numbers that were never issued are rejected: area 000, 666 or 900–999,
// group 00, serial 0000, and well-known sample and advertising numbers
// such as 078-05-1120, 219-09-9999 and 123-45-6789.
type SSN struct{}

// NewSSN returns the ssn detector.
func NewSSN() detect.Detector { return SSN{} }

// Category implements detect.Detector.
func (SSN) Category() string { return CategorySSN }

const maxSSN = 9

// Find implements detect.Detector.
func (SSN) Find(text []byte, from int, report func(detect.Match)) {
	findSSNs(text, from, scanned(text), report)
}

// FindDigits implements detect.DigitFinder.
func (SSN) FindDigits(text []byte, from int, digits *detect.Digits, report func(detect.Match)) {
	findSSNs(text, from, digits, report)
}

func findSSNs[S digitSource](text []byte, from int, src S, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		d := src.NextWord(pos)
		if d < 0 {
			return
		}
		e := runEnd(text, d, ssnSeps)
		pos = e
		f := runStart(text, d, 2*maxSSN, ssnSeps)
		if f >= from && e-f >= 9 && e-f <= 11 && ssnAt(text, f, e) {
			report(detect.Match{Start: f, End: e, Category: CategorySSN, Detector: "ssn"})
			continue
		}
		// SSNs written with dashes or dots and joined by single spaces
		// ("536-22-1234 401-23-4567") are judged one by one.
		if e-d < 11 {
			continue // no group that long
		}
		for g := d; g < e; {
			ge := g
			for ge < e && text[ge] != ' ' {
				ge++
			}
			joined := g > 1 && ssnSeps[text[g-1]] && isDigit(text[g-2])
			if ge-g == 11 && g >= from && (!joined || text[g-1] == ' ') && ssnAt(text, g, ge) {
				report(detect.Match{Start: g, End: ge, Category: CategorySSN, Detector: "ssn"})
			}
			g = ge + 1
		}
	}
}

var sampleSSNs = []string{
	"078051120", // Woolworth wallet card
	"219099999", // Social Security Board pamphlet
	"123456789",
	"457555462", // LifeLock advertising
	"111111111", "222222222", "333333333", "444444444", "555555555", "777777777", "888888888",
}

var ssnWords = newWordSet("ssn", "ssns", "ss", "soc", "social", "security", "ssid")

func ssnAt(text []byte, f, e int) bool {
	var g [3]int
	n, sep, ok := runGroups(text, f, e, g[:])
	switch {
	case !ok || !runBounded(text, f, e):
		return false
	case n == 3 && sep != 0 && g[0] == 3 && g[1] == 2 && g[2] == 4:
	case n == 1 && g[0] == 9:
		if !prevWordIn(text, f, 40, 4, ssnWords) {
			return false
		}
	default:
		return false
	}
	var d [9]byte
	k := 0
	for _, c := range text[f:e] {
		if isDigit(c) {
			d[k] = c
			k++
		}
	}
	area, group, serial := string(d[:3]), string(d[3:5]), string(d[5:])
	if area == "000" || area == "666" || d[0] == '9' || group == "00" || serial == "0000" {
		return false
	}
	for _, s := range sampleSSNs {
		if s == string(d[:]) {
			return false
		}
	}
	return true
}

// Hold implements detect.Detector: the trailing run while it could still
// be an SSN, and the trailing space-separated part of a longer run while
// it could still be one on its own (see Find).
func (SSN) Hold(text []byte) int {
	h := runHold(text, maxSSN, ssnSeps)
	n := len(text)
	k := n
	if k > 0 && (ssnSeps[text[k-1]] || text[k-1] == ',') {
		k--
	}
	g := k
	for g > 0 && k-g <= 11 && (isDigit(text[g-1]) || text[g-1] == '-' || text[g-1] == '.') {
		g--
	}
	if g < k && k-g <= 11 && g > 1 && text[g-1] == ' ' && isDigit(text[g-2]) {
		h = max(h, n-g)
	}
	return h
}
