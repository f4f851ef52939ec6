package pii

import (
	"bytes"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// TestBadInput scans hostile inputs with every detector, whole and in
// chunks: no panic, and matches only where the input has them. Run time is
// linear by construction (each detector visits a byte a bounded number of
// times); the test only makes sure the scans finish.
func TestBadInput(t *testing.T) {
	const mib = 1 << 20
	repeat := func(s string) []byte { return bytes.Repeat([]byte(s), mib/len(s)) }
	cases := []struct {
		name string
		text []byte
		want int // matches over all detectors; -1: don't care
	}{
		{"invalid utf8", repeat("\xff\xfe\x80\xc3"), 0},
		{"utf8 cut", repeat("\xe2\x82a@example.com\xe2"), mib / len("\xe2\x82a@example.com\xe2")},
		{"digits", repeat("1"), 0},
		{"nines", repeat("9"), 0},
		{"spaced digits", repeat("1 "), 0},
		{"dashed digits", repeat("4-"), 0},
		{"dotted digits", repeat("1."), 0},
		{"letters", repeat("a"), 0},
		{"upper", repeat("A"), 0},
		{"at", repeat("@"), 0},
		{"dots", repeat("."), 0},
		{"colons", repeat(":"), 0},
		{"plus", repeat("+"), 0},
		{"parens", repeat("("), 0},
		{"nested parens", []byte(strings.Repeat("(", mib/2) + "415" + strings.Repeat(")", mib/2)), 0},
		{"nested plus paren", repeat("(+1"), 0},
		{"hex token", repeat("deadbeef0123"), 0},
		{"ipv6ish", repeat("1:"), 0},
		{"base64 token", repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTExMTExMTExMTExMTEx"), 0},
		{"email token", []byte(strings.Repeat("a", mib) + "@example.com"), 0},
		{"domain token", []byte("a@" + strings.Repeat("b.", mib/2) + "com"), 0},
		{"iban prefixes", repeat("DE89 "), 0},
		{"emails", repeat("a@example.com "), mib / len("a@example.com ")},
		{"cards", repeat("4111111111111111, "), mib / len("4111111111111111, ")},
		{"single-spaced cards", repeat("4111111111111111 "), mib / len("4111111111111111 ")},
		{"single-spaced long numbers", repeat("41111111111111111111 "), 0},
		{"ssn context flood", repeat("SSN# "), 0},
		{"dotted ssns", repeat("536.22.1234, "), 2 * (mib / len("536.22.1234, "))}, // ssn, and phone reads them too
		{"single-spaced ssns", repeat("536-22-1234 "), mib / len("536-22-1234 ")},
		{"zero width", repeat("\u200b"), 0},
		{"zero width digits", repeat("4\u200b"), 0},
	}
	ds := append(New(Options{}), NewIP(true))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, d := range ds {
				n += len(detecttest.Whole(d, tc.text))
				if msg := detecttest.SharedDigits(d, tc.text[:min(len(tc.text), 4096)]); msg != "" {
					t.Errorf("%s: %.300s", d.Category(), msg)
				}
				if msg := detecttest.Chunked(d, tc.text, []int{4093, 8192, 1, 65536}); msg != "" {
					t.Errorf("%s: %.300s", d.Category(), msg)
				}
			}
			if tc.want >= 0 && n != tc.want {
				t.Errorf("%d matches, want %d", n, tc.want)
			}
		})
	}
}
