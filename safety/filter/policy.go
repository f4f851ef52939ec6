package filter

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/warden-llm/warden/safety/detect/classifier"
)

// Action is what a profile does about a finding.
type Action string

// Actions, weakest first.
const (
	Allow  Action = "allow"  // let it pass, record nothing
	Flag   Action = "flag"   // let it pass, record it and alert
	Redact Action = "redact" // replace it with a placeholder, record it
	Block  Action = "block"  // refuse the prompt or end the answer, record it and alert
)

func parseAction(s string) (Action, error) {
	switch a := Action(strings.ToLower(s)); a {
	case Allow, Flag, Redact, Block:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q (want allow, redact, block or flag)", s)
}

// Direction says which way text is going.
type Direction string

// Directions.
const (
	Input  Direction = "input"  // a prompt, on its way to the model
	Output Direction = "output" // an answer, on its way to the client
)

// ParseDirection accepts "input" or "output".
func ParseDirection(s string) (Direction, error) {
	switch d := Direction(s); d {
	case Input, Output:
		return d, nil
	}
	return "", fmt.Errorf("unknown direction %q (want input or output)", s)
}

// Categories every engine knows. Blocklists add their own names.
const (
	CatEmail         = "email"
	CatPhone         = "phone"
	CatCreditCard    = "credit_card"
	CatIBAN          = "iban"
	CatSSN           = "ssn"
	CatIP            = "ip"
	CatSecret        = "secret"
	CatInjection     = "injection"
	CatHiddenUnicode = "hidden_unicode"
	CatEncoded       = "encoded"
	CatConfusable    = "confusable"
	CatControl       = "control"
	CatCanary        = "canary"
	CatRepeat        = "repeat"
)

// Builtin lists the categories of the built-in detectors.
var Builtin = []string{
	CatEmail, CatPhone, CatCreditCard, CatIBAN, CatSSN, CatIP, CatSecret, CatInjection,
	CatHiddenUnicode, CatEncoded, CatConfusable, CatControl, CatCanary, CatRepeat,
}

// stripped are the categories whose redaction removes the text instead of
// writing a placeholder: invisible characters and terminal escapes carry
// nothing a reader should see.
var stripped = map[string]bool{CatHiddenUnicode: true, CatControl: true}

// Profile is a named policy: per direction and category an action, and an
// output size cap.
type Profile struct {
	Name string
	// Input and Output map a category to its action. A category missing
	// from the map is allowed.
	Input, Output map[string]Action
	// MaxOutputChars caps an answer's length in characters; 0 means no cap.
	MaxOutputChars int64
	// InjectionThreshold is the injection classifier's score at or above
	// which a text counts as an injection (the classifier reports from its
	// floor up; 0 keeps everything it reports).
	InjectionThreshold float64
}

// Action returns the profile's action for category in dir.
func (p *Profile) Action(dir Direction, category string) Action {
	m := p.Input
	if dir == Output {
		m = p.Output
	}
	if a, ok := m[category]; ok {
		return a
	}
	return Allow
}

// DefaultProfile is the profile a key without one gets, unless the config
// changes "default". It redacts PII and secrets both ways, blocks prompt
// injection and blocklisted terms on input, strips hidden Unicode both ways
// and terminal escapes from answers, blocks answers that leak the system
// prompt, and flags the rest. Public IP addresses are flagged, not
// redacted: in a homelab they are usually the point of the question.
func DefaultProfile() *Profile {
	pii := map[string]Action{
		CatEmail: Redact, CatPhone: Redact, CatCreditCard: Redact, CatIBAN: Redact, CatSSN: Redact,
		CatIP: Flag, CatSecret: Redact, CatHiddenUnicode: Redact, CatConfusable: Flag, CatEncoded: Flag,
	}
	in := maps.Clone(pii)
	in[CatInjection] = Block
	out := maps.Clone(pii)
	out[CatInjection] = Flag
	out[CatControl] = Redact
	out[CatCanary] = Block
	out[CatRepeat] = Flag
	out[CatEncoded] = Allow
	return &Profile{Name: "default", Input: in, Output: out, InjectionThreshold: float64(classifier.Embedded().Threshold)}
}

// ProfileConfig is one [safety.profiles.NAME] table.
type ProfileConfig struct {
	// Base names the profile this one starts from ("default" when empty;
	// "none" starts from nothing, i.e. everything allowed).
	Base           string            `toml:"base"`
	Input          map[string]string `toml:"input"`
	Output         map[string]string `toml:"output"`
	MaxOutputChars int64             `toml:"max_output_chars"`
	// InjectionThreshold sets the injection classifier's threshold (0: the
	// base profile's, which for the default is the model's own).
	InjectionThreshold float64 `toml:"injection_threshold"`
	// BlocklistAction is the action for every blocklist category not named
	// in Input or Output ("block" when empty).
	BlocklistAction string `toml:"blocklist_action"`
}

// BuildProfiles turns the config's profile tables into profiles. The
// built-in "default" is always there; a table named "default" changes it.
// Categories must be built-in or blocklist names; canary and repeat can only
// be acted on in output, and repeat only flagged (it is known when an answer
// ends, too late to redact it). Guard names the categories a guard model
// reports: the default profile blocks those it does not name otherwise.
func BuildProfiles(cfgs map[string]ProfileConfig, blocklists []string, guard ...string) (map[string]*Profile, error) {
	known := map[string]bool{}
	for _, c := range slices.Concat(Builtin, blocklists, guard) {
		known[c] = true
	}
	out := map[string]*Profile{}
	var build func(name string, seen []string) (*Profile, error)
	build = func(name string, seen []string) (*Profile, error) {
		if p, ok := out[name]; ok {
			return p, nil
		}
		if slices.Contains(seen, name) {
			return nil, fmt.Errorf("safety profile %q: base cycle %s", name, strings.Join(append(seen, name), " → "))
		}
		cfg, ok := cfgs[name]
		if !ok {
			switch name {
			case "default":
				p := DefaultProfile()
				guardDefaults(p, guard)
				blockAll(p, blocklists, Block)
				out[name] = p
				return p, nil
			case "none":
				return &Profile{Name: "none", Input: map[string]Action{}, Output: map[string]Action{},
					InjectionThreshold: float64(classifier.Embedded().Threshold)}, nil
			}
			return nil, fmt.Errorf("safety profile %q is not defined", name)
		}
		base := cfg.Base
		if base == "" && name != "default" {
			base = "default"
		}
		var p *Profile
		switch {
		case base == "" || (name == "default" && base == "default"):
			p = DefaultProfile()
			guardDefaults(p, guard)
		default:
			b, err := build(base, append(seen, name))
			if err != nil {
				return nil, err
			}
			p = &Profile{Input: maps.Clone(b.Input), Output: maps.Clone(b.Output), MaxOutputChars: b.MaxOutputChars,
				InjectionThreshold: b.InjectionThreshold}
		}
		p.Name = name
		if cfg.BlocklistAction != "" || base == "" || base == "default" {
			act := Block
			if cfg.BlocklistAction != "" {
				a, err := parseAction(cfg.BlocklistAction)
				if err != nil {
					return nil, fmt.Errorf("safety profile %q: blocklist_action: %v", name, err)
				}
				act = a
			}
			blockAll(p, blocklists, act)
		}
		for _, side := range []struct {
			dir Direction
			in  map[string]string
			to  map[string]Action
		}{{Input, cfg.Input, p.Input}, {Output, cfg.Output, p.Output}} {
			for cat, s := range side.in {
				a, err := parseAction(s)
				if err != nil {
					return nil, fmt.Errorf("safety profile %q: %s.%s: %v", name, side.dir, cat, err)
				}
				if !known[cat] {
					return nil, fmt.Errorf("safety profile %q: %s.%s: unknown category (built-in: %s; blocklists: %s)",
						name, side.dir, cat, strings.Join(Builtin, ", "), strings.Join(blocklists, ", "))
				}
				if (cat == CatCanary || cat == CatRepeat) && side.dir == Input && a != Allow {
					return nil, fmt.Errorf("safety profile %q: input.%s: %s applies to answers only", name, cat, cat)
				}
				if cat == CatRepeat && (a == Redact || a == Block) {
					return nil, fmt.Errorf("safety profile %q: output.repeat: only allow or flag (a repeat is known when the answer has ended)", name)
				}
				side.to[cat] = a
			}
		}
		if cfg.MaxOutputChars < 0 {
			return nil, fmt.Errorf("safety profile %q: max_output_chars must not be negative", name)
		}
		if cfg.MaxOutputChars > 0 {
			p.MaxOutputChars = cfg.MaxOutputChars
		}
		if t := cfg.InjectionThreshold; t != 0 {
			m := classifier.Embedded()
			if t < float64(m.Floor) || t >= 1 {
				return nil, fmt.Errorf("safety profile %q: injection_threshold %g out of range: the classifier reports scores from %.4f (its floor) to 1; its default is %.4f",
					name, t, m.Floor, m.Threshold)
			}
			p.InjectionThreshold = t
		}
		out[name] = p
		return p, nil
	}
	names := slices.Sorted(maps.Keys(cfgs))
	names = append(names, "default")
	for _, n := range names {
		if _, err := build(n, nil); err != nil {
			return nil, err
		}
	}
	if _, ok := out["none"]; !ok {
		out["none"], _ = build("none", nil)
	}
	return out, nil
}

func blockAll(p *Profile, blocklists []string, a Action) {
	for _, c := range blocklists {
		p.Input[c] = a
		p.Output[c] = a
	}
}
