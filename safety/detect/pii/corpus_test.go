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
