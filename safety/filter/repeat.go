package filter

import (
	"hash/fnv"
	"strings"
	"sync"
	"unicode"
)

// repeats remembers the last few answers by hash, to flag an answer that
// repeats one of them exactly or nearly (a MinHash estimate of the Jaccard
// similarity of their character 5-grams of at least nearJaccard). Short answers ("Yes.", "OK") repeat naturally and are
// not tracked. It keeps hashes only, never text.
type repeats struct {
	mu    sync.Mutex
	ring  []answerHash
	next  int
	exact map[uint64]int // exact hash → how many in ring
}

type answerHash struct {
	exact uint64
	min   [minHashes]uint64
	set   bool
}

const (
	repeatMinBytes = 32 // answers shorter than this (normalized) are not tracked
	minHashes      = 32
	nearAgree      = 24 // of minHashes: an estimated Jaccard similarity of 0.75
)

const (
	repeatNone = iota
	repeatExact
	repeatNear
)

func repeatDetector(kind int) string {
	if kind == repeatExact {
		return "exact"
	}
	return "near_duplicate"
}

func newRepeats(window int) *repeats {
	return &repeats{ring: make([]answerHash, window), exact: map[uint64]int{}}
}

// check records answer and reports whether it repeats a recent one.
func (r *repeats) check(answer string) int {
	norm := normalizeRepeat(answer)
	if len(norm) < repeatMinBytes {
		return repeatNone
	}
	h := fnv.New64a()
	h.Write([]byte(norm))
	ah := answerHash{exact: h.Sum64(), min: minhash(norm), set: true}

	r.mu.Lock()
	defer r.mu.Unlock()
	kind := repeatNone
	if r.exact[ah.exact] > 0 {
		kind = repeatExact
	} else {
		for _, e := range r.ring {
			if e.set && agree(&e.min, &ah.min) >= nearAgree {
				kind = repeatNear
				break
			}
		}
	}
	if old := r.ring[r.next]; old.set {
		if r.exact[old.exact]--; r.exact[old.exact] <= 0 {
			delete(r.exact, old.exact)
		}
	}
	r.ring[r.next] = ah
	r.next = (r.next + 1) % len(r.ring)
	r.exact[ah.exact]++
	return kind
}

// normalizeRepeat is the text the repeat check compares: lower case,
// letters and digits only, words joined by one space.
func normalizeRepeat(text string) string {
	words := strings.FieldsFunc(strings.ToLower(text), func(c rune) bool {
		return !unicode.IsLetter(c) && !unicode.IsNumber(c)
	})
	return strings.Join(words, " ")
}

// Signature is the repeat check's MinHash signature of a text, exported
// for other near-duplicate checks (`warden dataset check`).
type Signature struct {
	Exact uint64            // FNV-64a of the normalized text
	Min   [minHashes]uint64 // MinHash of its character 5-grams
	Short bool              // shorter than the repeat check tracks: not near-compared
}

// Sign returns text's signature as the repeat check computes it.
func Sign(text string) Signature {
	norm := normalizeRepeat(text)
	h := fnv.New64a()
	h.Write([]byte(norm))
	return Signature{Exact: h.Sum64(), Min: minhash(norm), Short: len(norm) < repeatMinBytes}
}

// NearDuplicate reports whether two signatures agree as the repeat check's
// near-duplicate test does (an estimated Jaccard similarity of at least
// 0.75).
func NearDuplicate(a, b *Signature) bool { return agree(&a.Min, &b.Min) >= nearAgree }

// minhash returns, per hash function, the least hash over the text's
// character 5-grams.
func minhash(s string) [minHashes]uint64 {
	var m [minHashes]uint64
	for i := range m {
		m[i] = ^uint64(0)
	}
	for i := 0; i+5 <= len(s); i++ {
		h := fnv.New64a()
		h.Write([]byte(s[i : i+5]))
		x := h.Sum64()
		for j := range m {
			if v := mix(x + uint64(j)*0x9e3779b97f4a7c15); v < m[j] {
				m[j] = v
			}
		}
	}
	return m
}

// mix is SplitMix64's finalizer.
func mix(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func agree(a, b *[minHashes]uint64) int {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}
