package secret

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// holdRef is Hold as first written, one prefix at a time and with
// bytes.LastIndex, for TestHoldFast.
func holdRef(text []byte) int {
	n := len(text)
	h := 0
	for _, p := range prefixes {
		for k := min(len(p.s)-1, n); k > 0; k-- {
			if string(text[n-k:]) == p.s[:k] && (p.bound == nil || n-k == 0 || !p.bound[text[n-k-1]]) {
				h = max(h, k)
				break
			}
		}
	}
	return h
}

// TestHoldFast checks prefixHold and lastBegin against the
// plain versions on texts built from prefix fragments.
func TestHoldFast(t *testing.T) {
	frags := []string{"A", "AK", "AKI", "x", "xo", "xox", "xoxb", "-", "--", "-----", "-----BEGIN", "-----BEGIN ",
		"B", "g", "gh", "ghp", "github_pa", "s", "sk", "sk-", "sk-an", "e", "ey", "hooks.slack.com/serv", " ", "_", "9", "z",
		"gl", "glr", "glim", "GR134", "xoxe", "xoxe.", "xoxe.xox", "ABS", "hooks.slack.com/work", "hooks.slack.com/"}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 50000 {
		var b []byte
		for range rng.IntN(6) {
			b = append(b, frags[rng.IntN(len(frags))]...)
		}
		if h, want := prefixHold(b), holdRef(b); h != want {
			t.Fatalf("%q: prefix hold %d, want %d", b, h, want)
		}
		if got, want := lastBegin(b), bytes.LastIndex(b, []byte("-----BEGIN ")); got != want {
			t.Fatalf("%q: lastBegin %d, want %d", b, got, want)
		}
	}
}
