package filter

import (
	"slices"
	"testing"
)

func TestJudge(t *testing.T) {
	ps, err := BuildProfiles(map[string]ProfileConfig{
		"lenient": {Input: map[string]string{"hate": "flag", "privacy": "redact"}, Output: map[string]string{"hate": "allow"}},
		"bare":    {Base: "none"},
	}, nil, "hate", "privacy")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Profiles: ps, Detectors: Detectors(DetectorOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		profile string
		dir     Direction
		cat     string
		want    Action
	}{
		{"default", Input, "hate", Block},
		{"default", Output, "privacy", Block},
		{"lenient", Input, "hate", Flag},
		{"lenient", Input, "privacy", Block}, // redact has no span: block
		{"lenient", Output, "hate", Allow},
		{"lenient", Output, "privacy", Block}, // inherited from default
		{"bare", Input, "hate", Allow},
	}
	for _, tt := range tests {
		r, err := e.Request(tt.profile)
		if err != nil {
			t.Fatal(err)
		}
		got := r.Judge(tt.dir, tt.cat, "guard")
		if got != tt.want {
			t.Errorf("%s %s %s: got %s, want %s", tt.profile, tt.dir, tt.cat, got, tt.want)
		}
		ds := r.Decisions()
		if tt.want == Allow && len(ds) != 0 {
			t.Errorf("%s %s %s: allowed verdict recorded: %v", tt.profile, tt.dir, tt.cat, ds)
		}
		if tt.want != Allow && !slices.Equal(ds, []Decision{{tt.dir, tt.cat, tt.want, 1}}) {
			t.Errorf("%s %s %s: decisions %v", tt.profile, tt.dir, tt.cat, ds)
		}
	}
	if _, err := BuildProfiles(map[string]ProfileConfig{"x": {Input: map[string]string{"hate": "flag"}}}, nil); err == nil {
		t.Error("a guard category was accepted without a guard")
	}
}
