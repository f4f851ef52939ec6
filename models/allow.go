package models

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/ollama/ollama/types/model"
)

// ErrNotAllowed is the error of a model name outside the allowlist
// ([models] allow).
var ErrNotAllowed = errors.New("model not allowed")

// Allowlist is [models] allow: glob patterns over canonical,
// registry-qualified model names. A pattern matches a name when it matches
// its canonical form (registry.ollama.ai/library/llama3.2:latest) or its
// shortest display form (llama3.2:latest, user/model:tag, or
// host/user/model:tag off the default registry); as in path.Match, '*'
// does not cross '/'. A pattern without glob characters is a model name in
// any spelling. An empty Allowlist allows every model.
type Allowlist struct {
	patterns []allowPattern
	raw      []string
}

type allowPattern struct {
	glob bool
	text string // lowercased glob, or canonical name
}

// maxAllowPattern bounds one pattern's length.
const maxAllowPattern = 512

// ParseAllowlist checks and compiles patterns. An empty or malformed
// pattern, bad glob syntax or a plain name Ollama would not accept is an
// error naming it.
func ParseAllowlist(patterns []string) (Allowlist, error) {
	var a Allowlist
	for _, raw := range patterns {
		p := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case p == "":
			return Allowlist{}, errors.New("empty model pattern")
		case len(p) > maxAllowPattern:
			return Allowlist{}, fmt.Errorf("model pattern %.32q… is longer than %d bytes", p, maxAllowPattern)
		case strings.ContainsAny(p, " \t\r\n"):
			return Allowlist{}, fmt.Errorf("model pattern %q holds white space", raw)
		case strings.ContainsAny(p, `*?[\`):
			if _, err := path.Match(p, ""); err != nil {
				return Allowlist{}, fmt.Errorf("model pattern %q: bad glob syntax", raw)
			}
			a.patterns = append(a.patterns, allowPattern{glob: true, text: p})
		default:
			c, ok := Canonical(p)
			if !ok {
				return Allowlist{}, fmt.Errorf("model pattern %q is not a valid model name", raw)
			}
			a.patterns = append(a.patterns, allowPattern{text: c})
		}
		a.raw = append(a.raw, p)
	}
	return a, nil
}

// Empty reports whether the list allows every model (no patterns).
func (a Allowlist) Empty() bool { return len(a.patterns) == 0 }

// Patterns returns the patterns as compiled (trimmed, lowercased).
func (a Allowlist) Patterns() []string { return append([]string(nil), a.raw...) }

// Allowed reports whether the model called name may be pulled, imported
// and served. A name that is no model name is never allowed by a
// non-empty list.
func (a Allowlist) Allowed(name string) bool {
	if len(a.patterns) == 0 {
		return true
	}
	canon, ok := Canonical(name)
	if !ok {
		return false
	}
	short := strings.ToLower(model.ParseName(canon).DisplayShortest())
	for _, p := range a.patterns {
		if !p.glob {
			if p.text == canon {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p.text, canon); ok {
			return true
		}
		if ok, _ := path.Match(p.text, short); ok {
			return true
		}
	}
	return false
}
