package pii

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// piiLines are mixed into the shared benchmark text so that every PII
// detector meets its own kind often, near misses included.
var piiLines = []string{
	"Contact alice@example.com or call +1 (415) 555-2671. ",
	"Server 93.184.216.34:443 and 10.0.0.1, IPv6 2606:4700:4700::1111. ",
	"IBAN DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111. ",
	"SSN 536-22-1234, 221B Baker Street, London NW1 6XE, +44 20 7946 0958. ",
	"commit 3f2a9c8e1b7d4a6f5e0c9b8a7d6e5f4c3b2a1908 uuid 550e8400-e29b-41d4-a716-446655440000 ",
	"Latency p99 12.5 ms at 12:30:45, ISBN 978-3-16-148410-0. ",
}

func benchDetectors(b *testing.B, ds []detect.Detector) {
	text := detecttest.BenchText(piiLines...)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	cpu := proc.CPUTime()
	n := 0
	for b.Loop() {
		for _, d := range ds {
			d.Find(text, 0, func(detect.Match) { n++ })
		}
	}
	detecttest.ReportCPU(b, proc.CPUTime()-cpu, text, len(text))
}

// BenchmarkPII scans the shared 1 MiB text (with piiLines) with all six detectors.
func BenchmarkPII(b *testing.B) { benchDetectors(b, New(Options{})) }

func BenchmarkEmail(b *testing.B)      { benchDetectors(b, []detect.Detector{NewEmail()}) }
func BenchmarkPhone(b *testing.B)      { benchDetectors(b, []detect.Detector{NewPhone(nil)}) }
func BenchmarkCreditCard(b *testing.B) { benchDetectors(b, []detect.Detector{NewCreditCard()}) }
func BenchmarkIBAN(b *testing.B)       { benchDetectors(b, []detect.Detector{NewIBAN()}) }
func BenchmarkSSN(b *testing.B)        { benchDetectors(b, []detect.Detector{NewSSN()}) }
func BenchmarkIP(b *testing.B)         { benchDetectors(b, []detect.Detector{NewIP(false)}) }

// BenchmarkPhoneUnique measures the worst case for the phone detector: a
// text where every 100 bytes or so hold a different phone-shaped number,
// so its validity cache never helps and phonenumbers parses each one.
func BenchmarkPhoneUnique(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 5))
	var sb strings.Builder
	for sb.Len() < 1<<20 {
		sb.WriteString("Please call the office about the delivery tomorrow, thanks: ")
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(&sb, "(%03d) %03d-%04d. ", 200+r.IntN(800), r.IntN(1000), r.IntN(10000))
		case 1:
			fmt.Fprintf(&sb, "+44 20 %04d %04d. ", r.IntN(10000), r.IntN(10000))
		case 2:
			fmt.Fprintf(&sb, "0%d %d. ", 30+r.IntN(70), 1000000+r.IntN(9000000))
		}
	}
	text := []byte(sb.String())
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	cpu := proc.CPUTime()
	for b.Loop() {
		d := NewPhone(nil) // a cold cache each time
		d.Find(text, 0, func(detect.Match) {})
	}
	detecttest.ReportCPU(b, proc.CPUTime()-cpu, text, len(text))
}

// BenchmarkDigitDetectors scans the shared text with the five digit
// detectors, each looking for digits itself (find) and through one shared
// detect.Digits scan (shared), as the filter engine runs them.
func BenchmarkDigitDetectors(b *testing.B) {
	text := detecttest.BenchText(piiLines...)
	ds := []detect.Detector{NewPhone(nil), NewCreditCard(), NewIBAN(), NewSSN(), NewIP(false)}
	b.Run("find", func(b *testing.B) { benchDetectors(b, ds) })
	b.Run("shared", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		b.ReportAllocs()
		var digits detect.Digits
		cpu := proc.CPUTime()
		for b.Loop() {
			digits.Scan(text)
			for _, d := range ds {
				d.(detect.DigitFinder).FindDigits(text, 0, &digits, func(detect.Match) {})
			}
		}
		detecttest.ReportCPU(b, proc.CPUTime()-cpu, text, len(text))
	})
}

// BenchmarkFindDigits times each digit detector alone on a digit scan of
// the shared text built once, as its share of the filter engine's work.
func BenchmarkFindDigits(b *testing.B) {
	text := detecttest.BenchText(piiLines...)
	var digits detect.Digits
	digits.Scan(text)
	for _, d := range []detect.Detector{NewPhone(nil), NewCreditCard(), NewIBAN(), NewSSN(), NewIP(false)} {
		b.Run(d.Category(), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			cpu := proc.CPUTime()
			for b.Loop() {
				d.(detect.DigitFinder).FindDigits(text, 0, &digits, func(detect.Match) {})
			}
			detecttest.ReportCPU(b, proc.CPUTime()-cpu, text, len(text))
		})
	}
}
