package models

import (
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	const llama3 = "registry.ollama.ai/library/llama3:latest"
	for _, tt := range []struct {
		name, in string
		want     string // "" means not a model name
	}{
		{"short", "llama3", llama3},
		{"with tag", "llama3:latest", llama3},
		{"full", "registry.ollama.ai/library/llama3:latest", llama3},
		{"namespace", "library/llama3", llama3},
		{"uppercase", "LLama3:LATEST", llama3},
		{"uppercase host", "Registry.Ollama.AI/Library/llama3", llama3},
		{"other tag", "llama3:8B-Instruct-q4_K_M", "registry.ollama.ai/library/llama3:8b-instruct-q4_k_m"},
		{"user namespace", "someone/model:7b", "registry.ollama.ai/someone/model:7b"},
		{"own registry", "localhost:5000/ns/m:t", "localhost:5000/ns/m:t"},
		{"dots in model", "qwen2.5:0.5b", "registry.ollama.ai/library/qwen2.5:0.5b"},
		{"digest suffix", "llama3@sha256:0123abcd", ""},
		{"digest with tag", "llama3:latest@sha256:0123abcd", ""},
		{"empty", "", ""},
		{"colon only", ":", ""},
		{"empty tag", "llama3:", ""},
		{"empty namespace", "/llama3", ""},
		{"four parts", "a/b/c/d", ""},
		{"space", "llama 3", ""},
		{"newline", "llama3\n", ""},
		{"leading dash", "-llama3", ""},
		{"dot in namespace", "ns.x/m", ""},
		{"kelvin sign", "\u212aey", ""}, // lowercases to "key", but is not ASCII
		{"model too long", strings.Repeat("m", 81), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Canonical(tt.in)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Canonical(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.want != "")
			}
		})
	}
}

// FuzzCanonical: Canonical never panics; what it returns is lowercase, its
// own canonical form, and the canonical form of the name's uppercase
// spelling too. Seeds are in testdata/fuzz/FuzzCanonical.
func FuzzCanonical(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		c, ok := Canonical(name)
		if !ok {
			if c != "" {
				t.Fatalf("Canonical(%q) = %q with ok false", name, c)
			}
			return
		}
		if c != strings.ToLower(c) {
			t.Fatalf("Canonical(%q) = %q, not lowercase", name, c)
		}
		if c2, ok2 := Canonical(c); !ok2 || c2 != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical of that = %q, %v", name, c, c2, ok2)
		}
		if c3, ok3 := Canonical(strings.ToUpper(name)); !ok3 || c3 != c {
			t.Fatalf("Canonical(%q) = %q, but of its uppercase %q, %v", name, c, c3, ok3)
		}
	})
}
