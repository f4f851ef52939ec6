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
	words := strings.FieldsFunc(strings.ToLower(answer), func(c rune) bool {
		return !unicode.IsLetter(c) && !unicode.IsNumber(c)
	})
	norm := strings.Join(words, " ")
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
