package models

import (
	"strings"

	"github.com/ollama/ollama/types/model"
)

// Canonical returns the name every spelling of a model shares, lowercased:
// "llama3", "llama3:latest" and "registry.ollama.ai/library/llama3:latest"
// are all "registry.ollama.ai/library/llama3:latest". ok is false, and the
// name "", for a name that cannot be a model (Ollama's model.ParseName
// finds it invalid: empty parts, characters outside [A-Za-z0-9_.-], a
// digest suffix); callers treat such a name as no model at all.
//
// The name is checked as given and lowercased after, so a non-ASCII letter
// that lowercases to an ASCII one (the Kelvin sign) does not make a bad
// name good. Canonical(c) == c for every c it returns.
func Canonical(name string) (string, bool) {
	n := model.ParseName(name)
	if !n.IsValid() {
		return "", false
	}
	return strings.ToLower(n.String()), true
}
