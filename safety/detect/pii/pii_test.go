package pii

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// found returns the matched substrings of text, "name:span" each.
func found(d detect.Detector, text string) []string {
	var out []string
	for _, m := range detecttest.Whole(d, []byte(text)) {
		out = append(out, m.Detector+":"+text[m.Start:m.End])
	}
	return out
}

type findCase struct {
	name string
	text string
	want []string // "detector:span"
}

func runFind(t *testing.T, d detect.Detector, cases []findCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := found(d, tc.text)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Find(%q) = %q, want %q", tc.text, got, tc.want)
			}
			for _, sizes := range [][]int{{1}, {2}, {3, 1, 4}, {7}, {13, 5}} {
				if msg := detecttest.Chunked(d, []byte(tc.text), sizes); msg != "" {
					t.Errorf("%q: %s", tc.text, msg)
				}
			}
		})
	}
}

func TestEmail(t *testing.T) {
	runFind(t, NewEmail(), []findCase{
		{"plain", "mail alice@example.com now", []string{"email:alice@example.com"}},
		{"co.uk", "a@b.co.uk", []string{"email:a@b.co.uk"}},
		{"trailing dot", "write to bob.smith+tag@mail.example.org.", []string{"email:bob.smith+tag@mail.example.org"}},
		{"angle", "<carol_99@sub.example.net>", []string{"email:carol_99@sub.example.net"}},
		{"upper", "Dave@Example.COM", []string{"email:Dave@Example.COM"}},
		{"two", "x@example.com, y@example.de", []string{"email:x@example.com", "email:y@example.de"}},
		{"no tld", "foo@bar", nil},
		{"not a tld", "foo@bar.notatld", nil},
		{"localhost", "user@localhost", nil},
		{"one letter", "a@b.c", nil},
		{"invalid", "user@example.invalid", nil},
		{"local", "admin@printer.local", nil},
		{"bare suffix", "a@co.uk", nil},
		{"package", "lodash@4.17.21", nil},
		{"two at", "a@b@example.com", nil},
		{"dots", "a..b@example.com", nil},
		{"leading dot", ".a@example.com", nil},
		{"label dash", "a@-x.example.com", nil},
		{"label dash end", "a@x-.example.com", nil},
		{"long local", strings.Repeat("a", 65) + "@example.com", nil},
		{"max local", strings.Repeat("a", 64) + "@example.com", []string{"email:" + strings.Repeat("a", 64) + "@example.com"}},
		{"long label", "a@" + strings.Repeat("b", 64) + ".com", nil},
		{"glued", "a@example.com_x", nil},
		{"continuation byte", "a@example.com\x80", nil},
		{"utf8 after", "a@example.com\u00e9", []string{"email:a@example.com"}},
		{"decorator", "@Override", nil},
		{"mention", "@alice said", nil},
	})
}

func TestPhone(t *testing.T) {
	runFind(t, NewPhone(nil), []findCase{
		{"us dashes", "Call 415-555-2671 today", []string{"phone:415-555-2671"}},
		{"us parens", "(415) 555-2671", []string{"phone:(415) 555-2671"}},
		{"e164", "+14155552671", []string{"phone:+14155552671"}},
		{"intl spaces", "Tel +44 20 7946 0958.", []string{"phone:+44 20 7946 0958"}},
		{"uk trunk", "ring 020 7946 0958", []string{"phone:020 7946 0958"}},
		{"uk (0)", "+44 (0)20 7946 0958", []string{"phone:+44 (0)20 7946 0958"}},
		{"de", "Telefon: 030 12345678", []string{"phone:030 12345678"}},
		{"fr", "01 42 68 53 00", []string{"phone:01 42 68 53 00"}},
		{"dots", "415.555.2671", []string{"phone:415.555.2671"}},
		{"bare keyword", "phone: 4155552671", []string{"phone:4155552671"}},
		{"trailing group", "+1 415 555 2671 24", []string{"phone:+1 415 555 2671"}},
		{"two", "415-555-2671  212-555-0123", []string{"phone:415-555-2671", "phone:212-555-0123"}},
		{"local keyword", "call 555-1234", []string{"phone:555-1234"}},
		{"bare no keyword", "id 4155552671", nil},
		{"bare plain", "got 4155552671 rows", nil},
		{"date", "2024-01-15", nil},
		{"date time", "2024-01-15 12:30", nil},
		{"date dmy", "15.01.2024 and 01/15/2024", nil},
		{"version", "1.2.3.4", nil},
		{"ipv4", "10.20.30.40 and 192.168.100.200", nil},
		{"isbn", "978-3-16-148410-0", nil},
		{"isbn10", "0-306-40615-2", nil},
		{"order", "Order 415-555-2671", nil},
		{"money", "$415 555 2671", nil},
		{"glued", "abc415-555-2671", nil},
		{"glued right", "415-555-2671abc", nil},
		{"decimal", "3.14159265358", nil},
		{"short", "555-1234", nil},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", nil},
		{"parens unbalanced", "(415 555-2671", nil},
		{"invalid", "+1 123 456 7890", nil},
	})
}

func TestCreditCard(t *testing.T) {
	runFind(t, NewCreditCard(), []findCase{
		{"visa", "card 4111 1111 1111 1111 exp", []string{"luhn:4111 1111 1111 1111"}},
		{"visa bare", "4111111111111111", []string{"luhn:4111111111111111"}},
		{"visa dashes", "4111-1111-1111-1111.", []string{"luhn:4111-1111-1111-1111"}},
		{"mastercard", "5555 5555 5555 4444", []string{"luhn:5555 5555 5555 4444"}},
		{"mastercard 2", "2221000000000009", []string{"luhn:2221000000000009"}},
		{"amex", "3782 822463 10005", []string{"luhn:3782 822463 10005"}},
		{"diners", "3056 930902 5904", []string{"luhn:3056 930902 5904"}},
		{"discover", "6011111111111117", []string{"luhn:6011111111111117"}},
		{"jcb", "3530111333300000", []string{"luhn:3530111333300000"}},
		{"luhn bad", "4111 1111 1111 1112", nil},
		{"no issuer", "1234 5678 9012 3452", nil},
		{"amex length", "3782822463100050", nil},
		{"mixed seps", "4111 1111-1111 1111", nil},
		{"odd grouping", "41 1111 1111 111 111", nil},
		{"longer run", "14111111111111111", nil},
		{"longer groups", "1234 4111 1111 1111 1111", nil},
		{"word", "x4111111111111111", nil},
		{"token", "ID-4111111111111111", nil},
		{"decimal", "4111111111111111.5", nil},
		{"decimal left", "0.4111111111111111", nil},
		{"two with one space", "4012888888881881 4111111111111111", []string{"luhn:4012888888881881", "luhn:4111111111111111"}},
		{"two with comma", "4012888888881881, 4111111111111111", []string{"luhn:4012888888881881", "luhn:4111111111111111"}},
		{"three with spaces", "cards 5555555555554444 4012888888881881 4111111111111111.",
			[]string{"luhn:5555555555554444", "luhn:4012888888881881", "luhn:4111111111111111"}},
		{"one of two valid", "4012888888881882 4111111111111111", []string{"luhn:4111111111111111"}},
		{"two with dash", "4012888888881881-4111111111111111", nil},
		{"two glued to a word", "x4012888888881881 4111111111111111", []string{"luhn:4111111111111111"}},
	})
}

func TestIBAN(t *testing.T) {
	runFind(t, NewIBAN(), []findCase{
		{"de grouped", "IBAN: DE89 3704 0044 0532 0130 00.", []string{"iban-mod97:DE89 3704 0044 0532 0130 00"}},
		{"de compact", "DE89370400440532013000", []string{"iban-mod97:DE89370400440532013000"}},
		{"gb", "GB29 NWBK 6016 1331 9268 19", []string{"iban-mod97:GB29 NWBK 6016 1331 9268 19"}},
		{"no", "NO9386011117947", []string{"iban-mod97:NO9386011117947"}},
		{"then digits", "DE89 3704 0044 0532 0130 00 12", []string{"iban-mod97:DE89 3704 0044 0532 0130 00"}},
		{"bad check", "DE88 3704 0044 0532 0130 00", nil},
		{"too long", "DE893704004405320130001", nil},
		{"too short", "DE89 3704 0044 0532 0130 0", nil},
		{"bad grouping", "DE89 37040 044 0532 0130 00", nil},
		{"unknown country", "XX89 3704 0044 0532 0130 00", nil},
		{"lower", "de89 3704 0044 0532 0130 00", nil},
		{"glued", "xDE89370400440532013000", nil},
	})
}

func TestSSN(t *testing.T) {
	runFind(t, NewSSN(), []findCase{
		{"dashes", "SSN 536-22-1234", []string{"ssn:536-22-1234"}},
		{"spaces", "536 22 1234", []string{"ssn:536 22 1234"}},
		{"no keyword dashes", "id 536-22-1234.", []string{"ssn:536-22-1234"}},
		{"bare keyword", "social security number: 536221234", []string{"ssn:536221234"}},
		{"bare ssn#", "SSN#536221234", []string{"ssn:536221234"}},
		{"bare", "order 536221234", nil},
		{"area 000", "000-22-1234", nil},
		{"area 666", "666-22-1234", nil},
		{"area 9xx", "936-22-1234", nil},
		{"group 00", "536-00-1234", nil},
		{"serial 0000", "536-22-0000", nil},
		{"woolworth", "078-05-1120", nil},
		{"sample", "123-45-6789", nil},
		{"mixed", "536-22 1234", nil},
		{"longer", "536-22-12345", nil},
		{"phone", "415-555-2671", nil},
		{"date", "2024-01-15", nil},
		{"dots", "ssn 078.05.1123", []string{"ssn:078.05.1123"}},
		{"two with one space", "536-22-1234 401-23-4567", []string{"ssn:536-22-1234", "ssn:401-23-4567"}},
		{"two dotted", "536.22.1234 401.23.4567.", []string{"ssn:536.22.1234", "ssn:401.23.4567"}},
		{"one valid of two", "536-22-1234 666-23-4567", []string{"ssn:536-22-1234"}},
		{"then a number", "536-22-1234 12", []string{"ssn:536-22-1234"}},
		{"glued", "x536-22-1234 401-23-4567", []string{"ssn:401-23-4567"}},
		{"context ss#", "ss# 536221234", []string{"ssn:536221234"}},
		{"context security", "security number 536221234", []string{"ssn:536221234"}},
	})
}

func TestIP(t *testing.T) {
	runFind(t, NewIP(false), []findCase{
		{"v4", "server at 8.8.8.8.", []string{"ipv4:8.8.8.8"}},
		{"v4 port", "connect 93.184.216.34:443 now", []string{"ipv4:93.184.216.34"}},
		{"v4 cidr", "route 1.1.1.0/24", []string{"ipv4:1.1.1.0"}},
		{"v6", "2606:4700:4700::1111", []string{"ipv6:2606:4700:4700::1111"}},
		{"v6 full", "2001:4860:4860:0000:0000:0000:0000:8888", []string{"ipv6:2001:4860:4860:0000:0000:0000:0000:8888"}},
		{"v6 bracket", "[2a00:1450:4001:82b::200e]:443", []string{"ipv6:2a00:1450:4001:82b::200e"}},
		{"v6 mapped", "::ffff:8.8.4.4", []string{"ipv6:::ffff:8.8.4.4"}},
		{"private", "10.0.0.1 192.168.1.1 172.16.0.5 127.0.0.1", nil},
		{"cgnat", "100.64.1.1", nil},
		{"doc", "192.0.2.1 198.51.100.7 203.0.113.9 2001:db8::1", nil},
		{"link local", "169.254.1.1 fe80::1", nil},
		{"v6 private", "fd12:3456:789a::1 ::1", nil},
		{"five parts", "1.2.3.4.5", nil},
		{"octet", "256.1.1.1", nil},
		{"leading zero", "01.02.03.04", nil},
		{"version", "version 8.8.8.8", nil},
		{"v prefix", "v8.8.8.8", nil},
		{"glued", "8.8.8.8x", nil},
		{"time", "12:30:45", nil},
		{"mac", "00:1a:2b:3c:4d:5e", nil},
		{"cpp", "std::vector a::b", nil},
	})
	runFind(t, NewIP(true), []findCase{
		{"private", "10.0.0.1 fe80::1 127.0.0.1", []string{"ipv4:10.0.0.1", "ipv6:fe80::1", "ipv4:127.0.0.1"}},
		{"loopback v6", "::1", nil},
	})
}

// TestMasks checks the eight-bytes-at-a-time classifiers against the
// byte tables, for every byte value in every lane.
func TestMasks(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			var b [8]byte
			for i := range b {
				b[i] = byte(0x41 + i*37)
			}
			b[pos] = byte(c)
			for i := range b {
				x := uint64(0)
				for k := 7; k >= 0; k-- {
					x = x<<8 | uint64(b[k])
				}
				gd := detect.DigitMask(x)>>(8*i+7)&1 == 1
				gw := wordMask(x)>>(8*i+7)&1 == 1
				if gd != isDigit(b[i]) || gw != isWord(b[i]) {
					t.Fatalf("byte %#x at %d in %x: digit %v word %v", b[i], i, b, gd, gw)
				}
			}
		}
	}
}

// TestSSNPresidioTable scores the ssn detector on the cases of Presidio's
// US SSN recognizer test table (microsoft/presidio,
// presidio-analyzer/tests/test_us_ssn_recognizer.py, MIT): its four
// positives and seven negatives. The bare "078051121" is a positive there
// (a weak match); here nine bare digits need a context word, so recall is
// 3 of 4, and every negative stays rejected.
func TestSSNPresidioTable(t *testing.T) {
	d := NewSSN()
	found := func(s string) bool { return len(detecttest.Whole(d, []byte(s))) > 0 }
	hits := 0
	for _, s := range []string{"078051121", "078-05-1123", "078.05.1123", "078 05 1123"} {
		if found(s) {
			hits++
		} else {
			t.Logf("missed %q", s)
		}
	}
	if hits < 3 {
		t.Errorf("recall %d/4 on the Presidio positives, want ≥ 3", hits)
	}
	for _, s := range []string{"0780511201", "078051120", "000000000", "666000000", "078-05-0000", "078 00 1123", "693-09.4444"} {
		if found(s) {
			t.Errorf("false positive %q", s)
		}
	}
}

// checkObfuscated holds findObfuscated's one-pass search (blockmask) to
// its six bytes.IndexByte searches, from every offset up to 70.
func checkObfuscated(t *testing.T, text []byte) {
	t.Helper()
	for from := 0; from <= min(len(text), 70); from++ {
		var got, want []detect.Match
		findObfuscated(text, from, func(m detect.Match) { got = append(got, m) })
		old := vector
		vector = false
		findObfuscated(text, from, func(m detect.Match) { want = append(want, m) })
		vector = old
		if !slices.Equal(got, want) {
			t.Fatalf("findObfuscated(%q, %d): one pass %v, six searches %v", text, from, got, want)
		}
	}
}

// TestObfuscatedSearches checks findObfuscated's two searches on texts
// thick with at-tokens, their first bytes and addresses, of every length
// across a few blocks.
func TestObfuscatedSearches(t *testing.T) {
	pieces := []string{"john", " [at] ", "[at]", "(at)", "{at}", "<at>", "%40", "&#64;", "&#x40;", "&commat;",
		"example", " [dot] ", ".", "(dot)", "com", "de", " ", "%", "&", "[", "(", "{", "<", "x", "a.b", "\xff", "é"}
	r := rand.New(rand.NewPCG(8, 1))
	found := 0
	for range 1500 {
		var b strings.Builder
		for range r.IntN(120) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		text := []byte(b.String())
		checkObfuscated(t, text)
		findObfuscated(text, 0, func(detect.Match) { found++ })
	}
	if found == 0 {
		t.Fatal("no obfuscated address in the texts: the test compares nothing")
	}
}
