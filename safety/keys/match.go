package keys

import (
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/models"
)

// Principal is who an authenticated request acts for. The Cache shares one
// Principal between all requests of a key until the key changes: treat it
// (and its slices) as read-only.
type Principal struct {
	KeyID  string
	Name   string
	Scopes []Scope
	Models []string // the key's patterns as stored; empty = all models
	Limits Limits
	// Weight is the key's share in the fair queue (at least 1).
	Weight int
	// Profile names the key's safety-filter profile ("" = default).
	Profile string
	// AllowCIDRs are the client networks the key may be used from (empty:
	// any); see AllowsAddr.
	AllowCIDRs []string
	// RequireUser is the key's own keys.require_user (nil: the configured
	// default).
	RequireUser *bool
	// Probe: the key's requests are probes (`warden probe`).
	Probe bool

	patterns []pattern
	blocked  map[string]struct{}
	nets     []netip.Prefix
}

// Allows reports whether the key holds scope s. Scopes do not imply each
// other: admin grants the admin API only.
func (p *Principal) Allows(s Scope) bool {
	if p == nil {
		return false
	}
	return containsScope(p.Scopes, s)
}

// AllowsModel reports whether the key may use the model called name. Names
// are compared in Ollama's canonical form, so llama3, llama3:latest and
// registry.ollama.ai/library/llama3:latest are one model. A glob pattern
// matches if it matches the canonical name or the shortest display form
// (llama3:latest, or user/model:tag outside the default namespace); as in
// path.Match, '*' does not cross '/'. A key without patterns allows every
// model; a name Ollama cannot parse is never allowed by a key with patterns.
func (p *Principal) AllowsModel(name string) bool {
	if p == nil {
		return false
	}
	if len(p.patterns) == 0 {
		return true
	}
	canon, short, ok := canonical(name)
	if !ok {
		return false
	}
	for _, pt := range p.patterns {
		if pt.matches(canon, short) {
			return true
		}
	}
	return false
}

// pattern is one compiled model pattern: a canonical name or a glob.
type pattern struct {
	glob bool
	text string // lowercased glob, or canonical name
}

func (pt pattern) matches(canon, short string) bool {
	if !pt.glob {
		return pt.text != "" && pt.text == canon
	}
	// Patterns were syntax-checked when stored; a bad one matches nothing.
	if ok, _ := path.Match(pt.text, canon); ok {
		return true
	}
	ok, _ := path.Match(pt.text, short)
	return ok
}

// isGlob reports whether p uses path.Match's special characters.
func isGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// canonical returns the canonical (models.Canonical) and shortest display
// forms of a model name, and false if Ollama would not accept the name.
func canonical(name string) (canon, short string, ok bool) {
	canon, ok = models.Canonical(name)
	if !ok {
		return "", "", false
	}
	return canon, model.ParseName(canon).DisplayShortest(), true
}

// normalizePatterns validates model patterns and returns them trimmed,
// lowercased and deduplicated, in the form they are stored and shown.
func normalizePatterns(in []string) ([]string, error) {
	if len(in) > maxModels {
		return nil, fmt.Errorf("%d model patterns, at most %d allowed", len(in), maxModels)
	}
	out := make([]string, 0, len(in))
	for _, raw := range in {
		p := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case p == "":
			return nil, fmt.Errorf("empty model pattern")
		case len(p) > maxPatternLen:
			return nil, fmt.Errorf("model pattern %.32q… is longer than %d bytes", p, maxPatternLen)
		case isGlob(p):
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("model pattern %q: bad glob syntax", raw)
			}
		default:
			if _, _, ok := canonical(p); !ok {
				return nil, fmt.Errorf("model pattern %q is not a valid model name", raw)
			}
		}
		dup := false
		for _, q := range out {
			dup = dup || q == p
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out, nil
}

// compilePatterns turns stored patterns into matchers, canonicalizing the
// ones without glob characters.
func compilePatterns(in []string) []pattern {
	out := make([]pattern, 0, len(in))
	for _, raw := range in {
		p := strings.ToLower(raw)
		if isGlob(p) {
			out = append(out, pattern{glob: true, text: p})
			continue
		}
		canon, _, ok := canonical(p)
		if !ok {
			// Not storable through this package. Keep an entry that
			// matches nothing so the key does not fall open to "all".
			canon = ""
		}
		out = append(out, pattern{text: canon})
	}
	return out
}

// newPrincipal builds the Principal of a stored key.
func newPrincipal(k Key) *Principal {
	return &Principal{
		KeyID:    k.ID,
		Name:     k.Name,
		Scopes:   k.Scopes,
		Models:   k.Models,
		Limits:   k.Limits,
		Weight:   max(k.Weight, 1),
		Profile:  k.Profile,
		patterns: compilePatterns(k.Models),

		AllowCIDRs: k.AllowCIDRs,
		nets:       compileCIDRs(k.AllowCIDRs),

		RequireUser: k.RequireUser,
		blocked:     blockedSet(k.BlockedUsers),
		Probe:       k.Probe,
	}
}
