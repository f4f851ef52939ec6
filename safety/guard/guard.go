// Package guard reads the verdicts of guard models (Llama Guard, Granite
// Guardian, ShieldGemma) and names their hazard codes as Warden safety
// categories. It holds no I/O: the server runs the model through its
// backend and hands the answer's text to Parse.
package guard

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Format is the output format of a family of guard models.
type Format string

// Formats.
const (
	// LlamaGuard answers "safe", or "unsafe" and a line of hazard codes
	// ("S1,S10"; Llama Guard 1 used "O1".."O6").
	LlamaGuard Format = "llama-guard"
	// GraniteGuardian answers "Yes" (the risk named in the system
	// message is present) or "No"; 3.2 and later wrap it as
	// "<score> yes </score>", maybe after a <think> block and before a
	// <confidence> tag.
	GraniteGuardian Format = "granite-guardian"
	// ShieldGemma answers "Yes" (the policy is violated) or "No".
	ShieldGemma Format = "shieldgemma"
)

// ParseFormat accepts a format's name; "" guesses it from model.
func ParseFormat(s, model string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case LlamaGuard, GraniteGuardian, ShieldGemma:
		return f, nil
	case "":
		return FormatFor(model), nil
	}
	return "", fmt.Errorf("unknown guard format %q (want %s, %s or %s)", s, LlamaGuard, GraniteGuardian, ShieldGemma)
}

// FormatFor guesses a model's format from its name: Granite Guardian and
// ShieldGemma by name, Llama Guard otherwise.
func FormatFor(model string) Format {
	m := strings.ToLower(model)
	switch {
	case strings.Contains(m, "granite") && strings.Contains(m, "guardian"):
		return GraniteGuardian
	case strings.Contains(m, "shieldgemma"):
		return ShieldGemma
	}
	return LlamaGuard
}

// Verdict is what a guard model said about a text.
type Verdict struct {
	Unsafe bool
	// Codes are Llama Guard's hazard codes, upper case, without repeats,
	// in the order given; yes/no guards give none.
	Codes []string
}

// ErrUnreadable is returned for an answer that is not a verdict of the
// format: the wrong model, a model that rambles, a truncated answer.
var ErrUnreadable = errors.New("guard: the model's answer is not a verdict")

// maxVerdict bounds the answer Parse reads: a verdict is a few words.
const maxVerdict = 4096

// Parse reads a guard model's answer in format f.
func Parse(f Format, out string) (Verdict, error) {
	if len(out) > maxVerdict {
		return Verdict{}, ErrUnreadable
	}
	switch f {
	case LlamaGuard:
		return parseLlamaGuard(out)
	case GraniteGuardian:
		return parseGranite(out)
	case ShieldGemma:
		return parseYesNo(out)
	}
	return Verdict{}, fmt.Errorf("guard: unknown format %q", f)
}

// parseLlamaGuard reads "safe", or "unsafe" with an optional line of
// comma-separated codes. Nothing else may follow.
func parseLlamaGuard(out string) (Verdict, error) {
	var lines []string
	for l := range strings.Lines(out) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 || len(lines) > 2 {
		return Verdict{}, ErrUnreadable
	}
	switch strings.ToLower(lines[0]) {
	case "safe":
		if len(lines) > 1 {
			return Verdict{}, ErrUnreadable
		}
		return Verdict{}, nil
	case "unsafe":
	default:
		return Verdict{}, ErrUnreadable
	}
	v := Verdict{Unsafe: true}
	if len(lines) == 1 {
		return v, nil
	}
	for c := range strings.SplitSeq(lines[1], ",") {
		c = strings.ToUpper(strings.TrimSpace(c))
		if !isCode(c) {
			return Verdict{}, ErrUnreadable
		}
		if !slices.Contains(v.Codes, c) {
			v.Codes = append(v.Codes, c)
		}
	}
	return v, nil
}

// isCode reports whether c is a Llama Guard code: S or O and one or two
// digits.
func isCode(c string) bool {
	if len(c) < 2 || len(c) > 3 || (c[0] != 'S' && c[0] != 'O') {
		return false
	}
	for _, d := range []byte(c[1:]) {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

// parseGranite reads Granite Guardian's answer: a bare yes/no, or the
// <score> tag's, with <think> and <confidence> blocks ignored.
func parseGranite(out string) (Verdict, error) {
	s := out
	if i := strings.Index(s, "</think>"); i >= 0 {
		s = s[i+len("</think>"):]
	}
	if i := strings.Index(s, "<score>"); i >= 0 {
		rest := s[i+len("<score>"):]
		j := strings.Index(rest, "</score>")
		if j < 0 {
			return Verdict{}, ErrUnreadable
		}
		return parseYesNo(rest[:j])
	}
	if i := strings.Index(s, "<confidence>"); i >= 0 {
		s = s[:i]
	}
	return parseYesNo(s)
}

// parseYesNo reads a lone "Yes" (unsafe) or "No", in any case, with an
// optional final full stop.
func parseYesNo(out string) (Verdict, error) {
	s := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(out)), ".")
	switch s {
	case "yes":
		return Verdict{Unsafe: true}, nil
	case "no":
		return Verdict{}, nil
	}
	return Verdict{}, ErrUnreadable
}

// Categories every guard stage may report besides the mapped ones.
const (
	// CatUnsafe is an unsafe verdict without a code, or with one the
	// category map does not name.
	CatUnsafe = "unsafe"
	// CatFailure is a guard call that gave no verdict (timeout, missing
	// model, unreadable answer): recorded with the failure mode's action.
	CatFailure = "guard_failure"
	// CatPassed is a safe verdict, recorded (allowed) so that the audit
	// trail shows the guard judged the text.
	CatPassed = "guard_passed"
)

// DefaultCategories names the hazard codes of Llama Guard 3 (S1–S14) and
// the risks of Granite Guardian and ShieldGemma as Warden categories.
// Granite Guardian's jailbreak risk is Warden's injection.
var DefaultCategories = map[string]string{
	"S1":  "violent_crimes",
	"S2":  "non_violent_crimes",
	"S3":  "sex_crimes",
	"S4":  "child_exploitation",
	"S5":  "defamation",
	"S6":  "specialized_advice",
	"S7":  "privacy",
	"S8":  "intellectual_property",
	"S9":  "indiscriminate_weapons",
	"S10": "hate",
	"S11": "self_harm",
	"S12": "sexual_content",
	"S13": "elections",
	"S14": "code_interpreter_abuse",

	"harm":               "harm",
	"social_bias":        "social_bias",
	"profanity":          "profanity",
	"sexual_content":     "sexual_content",
	"unethical_behavior": "unethical_behavior",
	"violence":           "violence",
	"jailbreak":          "injection",

	"dangerous_content": "dangerous_content",
	"harassment":        "harassment",
	"hate_speech":       "hate",
	"sexually_explicit": "sexual_content",
}

// Config is the [safety.guard] table, checked.
type Config struct {
	// Model is the guard model's name in the backend.
	Model  string
	Format Format
	// Prompt and Answer say which texts the guard judges.
	Prompt, Answer bool
	// Timeout bounds one guard call, its wait for a slot included.
	Timeout time.Duration
	// FailOpen lets a text pass (flagged) when the guard gives no
	// verdict; by default it is refused.
	FailOpen bool
	// Risk is the risk a yes/no guard is asked about (Granite Guardian's
	// system message, e.g. "harm" or "jailbreak") and the code of its
	// "Yes"; empty: Granite's default risk, reported as CatUnsafe.
	Risk string
	// Categories maps codes to categories over DefaultCategories.
	Categories map[string]string
}

// DefaultTimeout is a guard call's timeout when none is set.
const DefaultTimeout = 10 * time.Second

// Category is the Warden category of a code.
func (c *Config) Category(code string) string {
	if cat, ok := c.Categories[code]; ok {
		return cat
	}
	if cat, ok := DefaultCategories[code]; ok {
		return cat
	}
	return CatUnsafe
}

// Verdicts returns the categories of an unsafe verdict, sorted and without
// repeats.
func (c *Config) Verdicts(v Verdict) []string {
	if !v.Unsafe {
		return nil
	}
	codes := v.Codes
	if len(codes) == 0 && c.Risk != "" {
		codes = []string{c.Risk}
	}
	var cats []string
	for _, code := range codes {
		cats = append(cats, c.Category(code))
	}
	if len(cats) == 0 {
		cats = []string{CatUnsafe}
	}
	slices.Sort(cats)
	return slices.Compact(cats)
}

// AllCategories lists every category the guard can report, sorted:
// profiles may name them.
func (c *Config) AllCategories() []string {
	set := map[string]bool{CatUnsafe: true}
	for _, m := range []map[string]string{DefaultCategories, c.Categories} {
		for _, cat := range m {
			set[cat] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Check validates the config and fills defaults.
func (c *Config) Check() error {
	if c.Model == "" {
		return errors.New("guard: no model")
	}
	if !c.Prompt && !c.Answer {
		return errors.New("guard: on must name prompt, answer or both")
	}
	if c.Timeout < 0 {
		return errors.New("guard: timeout must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Format == "" {
		c.Format = FormatFor(c.Model)
	}
	for code, cat := range c.Categories {
		if !validName(cat) {
			return fmt.Errorf("guard: categories.%s: %q is not a category name (lower case letters, digits and _)", code, cat)
		}
		if cat == CatFailure || cat == CatPassed {
			return fmt.Errorf("guard: categories.%s: %q is reserved", code, cat)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}
