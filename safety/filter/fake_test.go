package filter

import (
	"bytes"

	"github.com/warden-llm/warden/safety/detect"
)

// digits is a test detector: runs of 5 to 100 ASCII digits, category ssn.
type digits struct{}

func (digits) Category() string { return CatSSN }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (digits) Find(text []byte, from int, report func(detect.Match)) {
	for i := 0; i < len(text); {
		if !isDigit(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		// A run touching the released context's start began earlier and
		// was too long to hold: it is not a match.
		if i >= from && !(i == 0 && from > 0) && j-i >= 5 && j-i <= 100 {
			report(detect.Match{Start: i, End: j, Category: CatSSN, Detector: "digits"})
		}
		i = j
	}
}

func (digits) Hold(text []byte) int {
	n := 0
	for n < len(text) && isDigit(text[len(text)-1-n]) {
		n++
	}
	if n > 100 {
		return 0
	}
	return n
}

// word is a test detector for the literal "boom" (any case), category
// injection.
type word struct{}

func (word) Category() string { return CatInjection }

func (word) Find(text []byte, from int, report func(detect.Match)) {
	l := (&literal{lit: []byte("boom"), detector: "boom"})
	l.Find(text, from, func(m detect.Match) {
		m.Category, m.Detector = CatInjection, "boom"
		report(m)
	})
}

func (word) Hold(text []byte) int { return (&literal{lit: []byte("boom")}).Hold(text) }

func testEngine(tb interface{ Fatal(...any) }, secret string) *Engine {
	profiles, err := BuildProfiles(nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := New(Config{
		Profiles:  profiles,
		Detectors: func() ([]detect.Detector, error) { return []detect.Detector{digits{}, word{}}, nil },
		Secret:    []byte(secret),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

var _ = bytes.Equal
