package guard

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		out    string
		want   Verdict
		bad    bool
	}{
		{"llama safe", LlamaGuard, "safe", Verdict{}, false},
		{"llama safe padded", LlamaGuard, "\n\nsafe\n", Verdict{}, false},
		{"llama unsafe codes", LlamaGuard, "unsafe\nS1,S10", Verdict{Unsafe: true, Codes: []string{"S1", "S10"}}, false},
		{"llama unsafe spaced", LlamaGuard, " Unsafe \n s2 , S2, S14 ", Verdict{Unsafe: true, Codes: []string{"S2", "S14"}}, false},
		{"llama unsafe no codes", LlamaGuard, "unsafe", Verdict{Unsafe: true}, false},
		{"llama guard 1 code", LlamaGuard, "unsafe\nO3", Verdict{Unsafe: true, Codes: []string{"O3"}}, false},
		{"llama empty", LlamaGuard, "", Verdict{}, true},
		{"llama garbage", LlamaGuard, "The capital of France is Paris.", Verdict{}, true},
		{"llama safe then more", LlamaGuard, "safe\nbut also S1", Verdict{}, true},
		{"llama bad code", LlamaGuard, "unsafe\nviolence", Verdict{}, true},
		{"llama three lines", LlamaGuard, "unsafe\nS1\nS2", Verdict{}, true},
		{"llama code too long", LlamaGuard, "unsafe\nS100", Verdict{}, true},
		{"llama empty code", LlamaGuard, "unsafe\nS1,,S2", Verdict{}, true},
		{"granite yes", GraniteGuardian, "Yes", Verdict{Unsafe: true}, false},
		{"granite no", GraniteGuardian, "No", Verdict{}, false},
		{"granite score", GraniteGuardian, "<score> yes </score>", Verdict{Unsafe: true}, false},
		{"granite think score confidence", GraniteGuardian, "<think>It is fine.</think>\n<score> no </score>\n<confidence> High </confidence>", Verdict{}, false},
		{"granite bare confidence", GraniteGuardian, "Yes\n<confidence> Low </confidence>", Verdict{Unsafe: true}, false},
		{"granite unclosed score", GraniteGuardian, "<score> yes", Verdict{}, true},
		{"granite maybe", GraniteGuardian, "maybe", Verdict{}, true},
		{"shieldgemma yes", ShieldGemma, "Yes", Verdict{Unsafe: true}, false},
		{"shieldgemma no stop", ShieldGemma, "No.", Verdict{}, false},
		{"shieldgemma sentence", ShieldGemma, "Yes, it violates the policy", Verdict{}, true},
		{"huge", LlamaGuard, "safe" + strings.Repeat(" ", maxVerdict), Verdict{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.format, tt.out)
			if tt.bad {
				if !errors.Is(err, ErrUnreadable) {
					t.Fatalf("Parse(%q) = %+v, %v; want ErrUnreadable", tt.out, got, err)
				}
				return
			}
			if err != nil || got.Unsafe != tt.want.Unsafe || !slices.Equal(got.Codes, tt.want.Codes) {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.out, got, err, tt.want)
			}
		})
	}
}

func TestFormatFor(t *testing.T) {
	for model, want := range map[string]Format{
		"llama-guard3:1b":         LlamaGuard,
		"granite3-guardian:2b":    GraniteGuardian,
		"ibm/granite-guardian3.3": GraniteGuardian,
		"shieldgemma:2b":          ShieldGemma,
		"demo:latest":             LlamaGuard,
	} {
		if got := FormatFor(model); got != want {
			t.Errorf("FormatFor(%q) = %s, want %s", model, got, want)
		}
	}
	if _, err := ParseFormat("llamaguard", ""); err == nil {
		t.Error("ParseFormat accepted an unknown format")
	}
	if f, err := ParseFormat("", "shieldgemma:9b"); err != nil || f != ShieldGemma {
		t.Errorf("ParseFormat guessed %s, %v", f, err)
	}
}

func TestVerdicts(t *testing.T) {
	c := &Config{Model: "m", Prompt: true, Categories: map[string]string{"S1": "violence", "S99": "custom"}}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		risk string
		v    Verdict
		want []string
	}{
		{"safe", "", Verdict{}, nil},
		{"mapped and default", "", Verdict{Unsafe: true, Codes: []string{"S10", "S1"}}, []string{"hate", "violence"}},
		{"unknown code", "", Verdict{Unsafe: true, Codes: []string{"S15"}}, []string{CatUnsafe}},
		{"no code", "", Verdict{Unsafe: true}, []string{CatUnsafe}},
		{"yes with risk", "jailbreak", Verdict{Unsafe: true}, []string{"injection"}},
		{"repeats folded", "", Verdict{Unsafe: true, Codes: []string{"S10", "S15", "S16"}}, []string{"hate", CatUnsafe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Risk = tt.risk
			if got := c.Verdicts(tt.v); !slices.Equal(got, tt.want) {
				t.Fatalf("Verdicts(%+v) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
	all := c.AllCategories()
	for _, want := range []string{"violence", "custom", "hate", CatUnsafe, "code_interpreter_abuse"} {
		if !slices.Contains(all, want) {
			t.Errorf("AllCategories lacks %q: %v", want, all)
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		ok   bool
	}{
		{"ok", Config{Model: "m", Prompt: true}, true},
		{"no model", Config{Prompt: true}, false},
		{"nothing on", Config{Model: "m"}, false},
		{"negative timeout", Config{Model: "m", Prompt: true, Timeout: -1}, false},
		{"bad category", Config{Model: "m", Answer: true, Categories: map[string]string{"S1": "Violent Crimes"}}, false},
		{"reserved category", Config{Model: "m", Answer: true, Categories: map[string]string{"S1": CatFailure}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Check()
			if (err == nil) != tt.ok {
				t.Fatalf("Check() = %v, want ok %v", err, tt.ok)
			}
		})
	}
	c := Config{Model: "shieldgemma:2b", Prompt: true}
	if err := c.Check(); err != nil || c.Timeout != DefaultTimeout || c.Format != ShieldGemma {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
}

// FuzzParse: any answer gives a verdict or ErrUnreadable, never a panic,
// and a verdict's codes are well-formed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"safe", "unsafe\nS1,S10", "unsafe", "Yes", "No.", "<score> yes </score>",
		"<think>x</think><score>no</score><confidence>High</confidence>", "\xff\xfe", "unsafe\n\u200bS1", "<score>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		for _, format := range []Format{LlamaGuard, GraniteGuardian, ShieldGemma} {
			v, err := Parse(format, out)
			if err != nil {
				if !errors.Is(err, ErrUnreadable) {
					t.Fatalf("%s: %q: unexpected error %v", format, out, err)
				}
				continue
			}
			for _, c := range v.Codes {
				if !isCode(c) || !utf8.ValidString(c) {
					t.Fatalf("%s: %q: bad code %q", format, out, c)
				}
			}
			if !v.Unsafe && len(v.Codes) > 0 {
				t.Fatalf("%s: %q: safe with codes %v", format, out, v.Codes)
			}
		}
	})
}
