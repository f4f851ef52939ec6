package filter

import (
	"slices"
	"strings"
	"testing"
)

func TestRedactPlaceholdersPerRequest(t *testing.T) {
	e := testEngine(t, "")
	r, err := e.Request("")
	if err != nil {
		t.Fatal(err)
	}
	res := r.Scan(Input, "call 12345 or 12345, not 67890; 1234 is short")
	want := "call [SSN_1] or [SSN_1], not [SSN_2]; 1234 is short"
	if res.Text != want || res.Blocked {
		t.Fatalf("got %q blocked=%v, want %q", res.Text, res.Blocked, want)
	}
	// The same number in the same request's answer gets the same name.
	s := r.Output()
	out := s.Write("it was 123") + s.Write("45 then 55555") + s.Close()
	if want := "it was [SSN_1] then [SSN_3]"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	if len(res.Findings) != 3 || res.Findings[0] != (Finding{Input, CatSSN, "digits", 5, 10, Redact, 0}) {
		t.Fatalf("findings %+v", res.Findings)
	}
	want2 := []Decision{{Input, CatSSN, Redact, 3}, {Output, CatSSN, Redact, 2}}
	if got := r.Decisions(); !slices.Equal(got, want2) {
		t.Fatalf("decisions %+v, want %+v", got, want2)
	}
}

func TestBlockInputAndOutput(t *testing.T) {
	e := testEngine(t, "")
	r, _ := e.Request("default")
	if res := r.Scan(Input, "please BOOM now"); !res.Blocked || !slices.Equal(r.Blocked(Input), []string{CatInjection}) {
		t.Fatalf("input not blocked: %+v", res)
	}
	// Output: injection is flagged by default, so the answer passes.
	s := r.Output()
	if out := s.Write("a boom b") + s.Close(); out != "a boom b" || s.Blocked() {
		t.Fatalf("flagged output changed: %q", out)
	}
}

func TestBlockEndsStream(t *testing.T) {
	profiles, err := BuildProfiles(map[string]ProfileConfig{"strict": {Output: map[string]string{"injection": "block"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t, "")
	e.profiles = profiles
	r, err := e.Request("strict")
	if err != nil {
		t.Fatal(err)
	}
	s := r.Output()
	var out strings.Builder
	for _, c := range []string{"safe 12", "345 text bo", "om and more", " text"} {
		out.WriteString(s.Write(c))
	}
	out.WriteString(s.Close())
	if got, want := out.String(), "safe [SSN_1] text "; got != want || !s.Blocked() {
		t.Fatalf("got %q blocked=%v, want %q blocked", got, s.Blocked(), want)
	}
	if s.Write("more") != "" || s.Close() != "" {
		t.Fatal("a blocked stream released more text")
	}
	if _, err := e.Request("nope"); err == nil {
		t.Fatal("unknown profile accepted")
	}
}

func TestHoldBackIsBounded(t *testing.T) {
	e := testEngine(t, "")
	r, _ := e.Request("")
	s := r.Output()
	var out strings.Builder
	// Prose streams through with no hold-back beyond a partial "boom".
	for _, w := range strings.Fields(strings.Repeat("the quick brown fox jumps over the lazy dog ", 50)) {
		got := s.Write(w + " ")
		if got != w+" " {
			t.Fatalf("word %q held back: released %q", w, got)
		}
		out.WriteString(got)
	}
	s.Write("bo")
	if s.MaxHold() != 2 {
		t.Fatalf("max hold %d, want 2", s.MaxHold())
	}
}

func TestRepeatFlagged(t *testing.T) {
	e := testEngine(t, "")
	answer := "The capital of France is Paris, a city on the Seine with many museums."
	for i, want := range []string{"", "exact", "near_duplicate", ""} {
		text := answer
		switch i {
		case 2:
			text = strings.Replace(answer, "many", "mány", 1)
		case 3:
			text = "Completely different: the mitochondria is the powerhouse of the cell, as they say."
		}
		r, _ := e.Request("")
		s := r.Output()
		s.Write(text)
		s.Close()
		var got string
		for _, f := range r.Findings() {
			if f.Category == CatRepeat {
				got = f.Detector
				if f.Action != Flag || f.End != len(text) {
					t.Fatalf("repeat finding %+v", f)
				}
			}
		}
		if got != want {
			t.Fatalf("answer %d: repeat %q, want %q", i, got, want)
		}
	}
	// Short answers are not tracked.
	for range 2 {
		r, _ := e.Request("")
		s := r.Output()
		s.Write("Yes.")
		s.Close()
		if len(r.Findings()) != 0 {
			t.Fatalf("short answer flagged: %+v", r.Findings())
		}
	}
}

func TestBuildProfiles(t *testing.T) {
	ps, err := BuildProfiles(map[string]ProfileConfig{
		"team":   {Input: map[string]string{"email": "allow", "S10": "flag"}, MaxOutputChars: 100},
		"child":  {Base: "team", Output: map[string]string{"secret": "block"}},
		"loose":  {Base: "none", Input: map[string]string{"injection": "flag"}},
		"custom": {BlocklistAction: "flag"},
	}, []string{"S10", "internal"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		p   string
		dir Direction
		cat string
		a   Action
	}{
		{"default", Input, "email", Redact}, {"default", Input, "internal", Block}, {"default", Output, "canary", Block},
		{"team", Input, "email", Allow}, {"team", Input, "S10", Flag}, {"team", Input, "phone", Redact},
		{"child", Input, "email", Allow}, {"child", Output, "secret", Block}, {"child", Input, "internal", Block},
		{"loose", Input, "email", Allow}, {"loose", Input, "injection", Flag},
		{"custom", Input, "S10", Flag}, {"custom", Output, "internal", Flag},
	}
	for _, c := range checks {
		if got := ps[c.p].Action(c.dir, c.cat); got != c.a {
			t.Errorf("%s %s %s = %s, want %s", c.p, c.dir, c.cat, got, c.a)
		}
	}
	if ps["child"].MaxOutputChars != 100 {
		t.Errorf("child max_output_chars %d, want inherited 100", ps["child"].MaxOutputChars)
	}
	for name, bad := range map[string]map[string]ProfileConfig{
		"unknown category": {"x": {Input: map[string]string{"emial": "redact"}}},
		"bad action":       {"x": {Input: map[string]string{"email": "delete"}}},
		"repeat block":     {"x": {Output: map[string]string{"repeat": "block"}}},
		"canary input":     {"x": {Input: map[string]string{"canary": "block"}}},
		"cycle":            {"a": {Base: "b"}, "b": {Base: "a"}},
		"missing base":     {"a": {Base: "zzz"}},
		"negative cap":     {"a": {MaxOutputChars: -1}},
	} {
		if _, err := BuildProfiles(bad, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
