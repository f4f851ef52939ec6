// Package keys holds Warden's scoped API keys: their format
// (wdn_<id>_<secret>), the Manager that creates, rotates, revokes and
// re-limits them in the SQLite store (each change one transaction with its
// admin event), and the Cache that authenticates requests from memory.
//
// Only SHA-256 of a secret is stored. The server's hot path, Cache.Authenticate,
// runs no SQL: the Cache polls one `SELECT MAX(version)` per interval and
// reloads the keys only when a writer (the CLI, the admin API) changed one,
// so a revoke or rotate reaches a running server within one interval.
package keys

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrNotFound reports an id that names no key.
	ErrNotFound = errors.New("key not found")
	// ErrInvalidKey is the one error Authenticate and Parse return, whatever
	// the reason (missing, malformed, unknown, wrong secret, revoked,
	// expired, past its grace), so callers cannot tell ids apart.
	ErrInvalidKey = errors.New("invalid api key")
	// ErrRevoked reports an attempt to rotate a revoked key.
	ErrRevoked = errors.New("key is revoked")
)

// Scope is one permission a key can hold.
type Scope string

// The scopes a key can hold. Admin grants only the admin API; it does not
// imply the others.
const (
	ScopeChat        Scope = "chat"
	ScopeCompletions Scope = "completions"
	ScopeEmbeddings  Scope = "embeddings"
	ScopeModels      Scope = "models"
	ScopeAdmin       Scope = "admin"
	// ScopeDelegate lets a key name the end user of each request (a shared
	// front end such as Open WebUI): the user is held to the key's per-user
	// limits, shares the key's slots fairly with its other users, and is
	// recorded in the audit trail. It grants no route by itself.
	ScopeDelegate Scope = "delegate"
)

// AllScopes lists every known scope.
func AllScopes() []Scope {
	return []Scope{ScopeChat, ScopeCompletions, ScopeEmbeddings, ScopeModels, ScopeAdmin, ScopeDelegate}
}

// DefaultScopes are given to a key created with none: everything but admin.
func DefaultScopes() []Scope {
	return []Scope{ScopeChat, ScopeCompletions, ScopeEmbeddings, ScopeModels}
}

// Known reports whether s is one of AllScopes.
func (s Scope) Known() bool {
	switch s {
	case ScopeChat, ScopeCompletions, ScopeEmbeddings, ScopeModels, ScopeAdmin, ScopeDelegate:
		return true
	}
	return false
}

// Limits are a key's quotas and caps. A zero field is not set: the server's
// configured default applies.
type Limits struct {
	RPM             int64 `json:"rpm,omitempty"`
	TPM             int64 `json:"tpm,omitempty"`
	TokensPerDay    int64 `json:"tokens_per_day,omitempty"`
	TokensPerMonth  int64 `json:"tokens_per_month,omitempty"`
	Concurrency     int64 `json:"concurrency,omitempty"`
	MaxOutputTokens int64 `json:"max_output_tokens,omitempty"`
	MaxOutputChars  int64 `json:"max_output_chars,omitempty"`
	MaxInputTokens  int64 `json:"max_input_tokens,omitempty"`

	// The per-user limits of a delegate key: each end user it names is
	// held to them, in buckets of its own, while the key's limits above
	// still bound the total.
	UserRPM            int64 `json:"user_rpm,omitempty"`
	UserTPM            int64 `json:"user_tpm,omitempty"`
	UserTokensPerDay   int64 `json:"user_tokens_per_day,omitempty"`
	UserTokensPerMonth int64 `json:"user_tokens_per_month,omitempty"`
	UserConcurrency    int64 `json:"user_concurrency,omitempty"`
}

// Validate refuses negative limits, naming the first one.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"rpm", l.RPM}, {"tpm", l.TPM}, {"tokens-per-day", l.TokensPerDay},
		{"tokens-per-month", l.TokensPerMonth}, {"concurrency", l.Concurrency},
		{"max-output-tokens", l.MaxOutputTokens}, {"max-output-chars", l.MaxOutputChars},
		{"max-input-tokens", l.MaxInputTokens},
		{"user-rpm", l.UserRPM}, {"user-tpm", l.UserTPM}, {"user-tokens-per-day", l.UserTokensPerDay},
		{"user-tokens-per-month", l.UserTokensPerMonth}, {"user-concurrency", l.UserConcurrency},
	} {
		if f.v < 0 {
			return fmt.Errorf("limit %s is negative (%d)", f.name, f.v)
		}
	}
	return nil
}

// Key is a stored key as the admin sees it: never its secret or hash.
type Key struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Scopes []Scope  `json:"scopes"`
	Models []string `json:"models"` // glob patterns; empty = all models
	Limits Limits   `json:"limits"`
	// Weight is the key's share of the backend's slots in the fair queue
	// (1 = one share; a key of weight 2 gets twice the service of a key of
	// weight 1 while both wait).
	Weight int `json:"weight"`
	// Profile names the safety-filter profile applied to the key's
	// requests; "" is the default profile. (Stored in the keys table's
	// policy column.)
	Profile string `json:"profile"`
	// AllowCIDRs are the client networks the key may be used from
	// (canonical CIDRs); empty allows any address.
	AllowCIDRs []string `json:"allow_cidrs"`
	// RequireUser, when set, overrides keys.require_user for this key: a
	// delegate request that names no end user is refused with 400.
	RequireUser *bool `json:"require_user,omitempty"`
	// BlockedUsers are the end users refused (403) under this key.
	BlockedUsers []string `json:"blocked_users"`
	// Probe marks the key `warden probe` sends its probes with: the audit
	// records of its requests say they are probes.
	Probe    bool       `json:"probe,omitempty"`
	Created  time.Time  `json:"created"`
	Rotated  *time.Time `json:"rotated,omitempty"`
	Expires  *time.Time `json:"expires,omitempty"`
	Revoked  *time.Time `json:"revoked,omitempty"`
	LastUsed *time.Time `json:"last_used,omitempty"`
	// GraceUntil is when the previous secret stops working after a rotate
	// (nil when there is none).
	GraceUntil *time.Time `json:"grace_until,omitempty"`
}

// Spec is what Create needs to make a key.
type Spec struct {
	Name    string
	Scopes  []Scope       // empty = DefaultScopes
	Models  []string      // glob patterns (path.Match syntax); empty = all
	Expires time.Duration // from creation; 0 = never
	Limits  Limits
	Weight  int    // 0 = DefaultWeight
	Profile string // "" = the default profile
	// AllowCIDRs are the client networks the key may be used from (CIDRs
	// or single addresses); empty = any address.
	AllowCIDRs []string
	// RequireUser overrides keys.require_user for the key (nil: the
	// configured default).
	RequireUser *bool
	// Probe marks a probe key (see Key.Probe).
	Probe bool
}

const (
	maxNameLen    = 64
	maxModels     = 256
	maxPatternLen = 512
)

// Validate checks s without writing anything. Create calls it and stores
// the normalized form (see normalize).
func (s Spec) Validate() error {
	_, err := s.normalize()
	return err
}

// normalize validates s and returns it with the name trimmed, scopes
// defaulted and deduplicated, and model patterns trimmed and lowercased.
func (s Spec) normalize() (Spec, error) {
	s.Name = strings.TrimSpace(s.Name)
	if err := checkLabel("name", s.Name, maxNameLen); err != nil {
		return Spec{}, err
	}
	if s.Name == "" {
		return Spec{}, errors.New("name is required")
	}
	scopes, err := normalizeScopes(s.Scopes)
	if err != nil {
		return Spec{}, err
	}
	s.Scopes = scopes
	models, err := normalizePatterns(s.Models)
	if err != nil {
		return Spec{}, err
	}
	s.Models = models
	if s.Expires < 0 {
		return Spec{}, fmt.Errorf("expiry %v is negative", s.Expires)
	}
	if err := s.Limits.Validate(); err != nil {
		return Spec{}, err
	}
	if s.Weight == 0 {
		s.Weight = DefaultWeight
	}
	if err := checkWeight(s.Weight); err != nil {
		return Spec{}, err
	}
	s.Profile = strings.TrimSpace(s.Profile)
	if err := checkProfile(s.Profile); err != nil {
		return Spec{}, err
	}
	cidrs, err := normalizeCIDRs(s.AllowCIDRs)
	if err != nil {
		return Spec{}, err
	}
	s.AllowCIDRs = cidrs
	return s, nil
}

// Bounds of a key's scheduling weight.
const (
	DefaultWeight = 1
	MaxWeight     = 1000
)

func checkWeight(w int) error {
	if w < 1 || w > MaxWeight {
		return fmt.Errorf("weight must be between 1 and %d, got %d", MaxWeight, w)
	}
	return nil
}

const maxProfileLen = 64

// checkProfile checks a profile name's form only: whether a profile of
// that name is configured is the server's business.
func checkProfile(p string) error {
	if err := checkLabel("profile", p, maxProfileLen); err != nil {
		return err
	}
	if strings.ContainsAny(p, " \t") {
		return fmt.Errorf("profile %q holds a space", p)
	}
	return nil
}

// checkLabel refuses text that is too long, not UTF-8 or not printable.
func checkLabel(what, s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Errorf("%s is %d characters, at most %d allowed", what, n, max)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s holds a non-printable character %U", what, r)
		}
	}
	return nil
}

func normalizeScopes(in []Scope) ([]Scope, error) {
	if len(in) == 0 {
		return DefaultScopes(), nil
	}
	out := make([]Scope, 0, len(in))
	for _, s := range in {
		s = Scope(strings.ToLower(strings.TrimSpace(string(s))))
		if !s.Known() {
			return nil, fmt.Errorf("unknown scope %q (known: chat, completions, embeddings, models, admin, delegate)", s)
		}
		if !containsScope(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func containsScope(list []Scope, s Scope) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
