package pii

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// streamTokens are the pieces random texts are built from: whole and
// partial matches of every category, separators and glue, so that chunk
// cuts land everywhere near a boundary.
var streamTokens = []string{
	"alice@example.com", "a@b.co.uk", "@", ".", "-", " ", "  ", "x", "Z", "_", "\n", ",", ":", "::", "+", "(", ")",
	"4111 1111 1111 1111", "4111111111111111", "3782 822463 10005", "1111", "4", "0",
	"+1 415 555 2671", "(415) 555-2671", "020 7946 0958", "phone ", "call ", "order ", "4155552671",
	"DE89 3704 0044 0532 0130 00", "DE89", "GB29NWBK60161331926819", " 3704", "NO9386011117947",
	"536-22-1234", "SSN ", "536221234", "8.8.8.8", "10.0.0.1", "2606:4700::1111", "fe80::1", "1.2.3", "ffff",
	"é", "\xff", "\x80", "version ", "2024-01-15", "12:30:45",
	" [at] ", "(at)", "[dot]", " (dot) ", "%40", "&#64;", "&#x4", "%2e", "example", "com", "4111.1111.1111.1111", "/",
}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(streamTokens[r.IntN(len(streamTokens))])
	}
	return b.String()
}

// TestStreamRandom checks the streaming contract of every detector on many
// texts glued from near-matches, in many chunkings.
func TestStreamRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ds := append(New(Options{}), NewIP(true))
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	for i := 0; i < iters; i++ {
		text := randomText(r, 20+r.IntN(200))
		sizes := make([]int, 64)
		for j := range sizes {
			sizes[j] = 1 + r.IntN(12)
		}
		for _, d := range ds {
			if msg := detecttest.Chunked(d, []byte(text), sizes); msg != "" {
				t.Fatalf("%s on %q: %s", d.Category(), text, msg)
			}
		}
	}
}
