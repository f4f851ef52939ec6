package pii

import (
	"path/filepath"
	"testing"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

func TestCorpus(t *testing.T) {
	for _, tc := range []struct {
		category          string
		d                 detect.Detector
		precision, recall float64
	}{
		{CategoryEmail, NewEmail(), 0.95, 0.95},
		{CategoryPhone, NewPhone(nil), 0.95, 0.95},
		{CategoryCreditCard, NewCreditCard(), 0.95, 0.95},
		{CategoryIBAN, NewIBAN(), 0.95, 0.95},
		{CategorySSN, NewSSN(), 0.95, 0.95},
		{CategoryIP, NewIP(false), 0.95, 0.95},
	} {
		t.Run(tc.category, func(t *testing.T) {
			path := filepath.Join("testdata", "corpus", tc.category+".txt")
			detecttest.Corpus(t, path, tc.category, tc.d, tc.precision, tc.recall)
		})
	}
}

// TestCorpusFixes holds the card and SSN fixes of issue 16 to their own
// floors: cards joined by one space, SSN formats and context words.
func TestCorpusFixes(t *testing.T) {
	for _, tc := range []struct {
		file, category string
		d              detect.Detector
	}{
		{"credit_card_runs.txt", CategoryCreditCard, NewCreditCard()},
		{"ssn_formats.txt", CategorySSN, NewSSN()},
	} {
		t.Run(tc.file, func(t *testing.T) {
			detecttest.Corpus(t, filepath.Join("testdata", "corpus", tc.file), tc.category, tc.d, 0.95, 0.95)
		})
	}
}
