package pii

import (
	"testing"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

var fuzzSeeds = []string{
	"",
	"mail alice@example.com or bob@sub.example.co.uk.",
	"a@b.c foo@bar user@localhost x@",
	"Call +1 (415) 555-2671 or 020 7946 0958. 24 hours",
	"phone: 4155552671 on 2024-01-15 12:30",
	"card 4111 1111 1111 1111, amex 3782 822463 10005",
	"4111111111111111.5 x4111111111111111 1234 4111 1111 1111 1111",
	"IBAN DE89 3704 0044 0532 0130 00 GB29NWBK60161331926819",
	"SSN 536-22-1234, social security number 536221234",
	"8.8.8.8:53 2606:4700:4700::1111 ::ffff:1.2.3.4 fe80::1%eth0",
	"1.2.3.4.5 12:30:45 00:1a:2b:3c:4d:5e v1.2.3.4",
	"\xff\xfe4111111111111111\x80 a@example.com\xc3",
	"4012888888881881 4111111111111111 x4012888888881881/4111111111111111 5555555555554444-4012888888881881",
	"SSN# 536221234, ss# 536 22 1234, social 536-22-1234",
	"536-22-1234 401-23-4567 x536.22.1234 401.23.4567 536-22-1234 12",
}

// fuzzDetector fuzzes d against the streaming contract, and with the
// extra checks given.
func fuzzDetector(f *testing.F, d detect.Detector, extra ...func(*testing.T, []byte)) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), []byte{0, 3, 9, 1})
	}
	f.Fuzz(func(t *testing.T, text, chunks []byte) {
		if msg := detecttest.Chunked(d, text, detecttest.Sizes(chunks)); msg != "" {
			t.Fatal(msg)
		}
		for _, m := range detecttest.Whole(d, text) {
			if m.Category != d.Category() {
				t.Fatalf("match %v has category %q, want %q", m, m.Category, d.Category())
			}
		}
		if msg := detecttest.SharedDigits(d, text); msg != "" {
			t.Fatal(msg)
		}
		for _, check := range extra {
			check(t, text)
		}
	})
}

func FuzzEmail(f *testing.F)      { fuzzDetector(f, NewEmail(), checkObfuscated) }
func FuzzPhone(f *testing.F)      { fuzzDetector(f, NewPhone(nil)) }
func FuzzCreditCard(f *testing.F) { fuzzDetector(f, NewCreditCard()) }
func FuzzIBAN(f *testing.F)       { fuzzDetector(f, NewIBAN()) }
func FuzzSSN(f *testing.F)        { fuzzDetector(f, NewSSN()) }
func FuzzIP(f *testing.F)         { fuzzDetector(f, NewIP(false)) }
func FuzzIPPrivate(f *testing.F)  { fuzzDetector(f, NewIP(true)) }
