package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/guard"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// scriptedGuard is a guard model answering by the answer it is shown
// (the conversation's last message), and recording its requests.
type scriptedGuard struct {
	mu   sync.Mutex
	reqs []*api.ChatRequest
}

func (g *scriptedGuard) Chat(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	g.mu.Lock()
	g.reqs = append(g.reqs, req)
	g.mu.Unlock()
	last := req.Messages[len(req.Messages)-1].Content
	out := "safe"
	switch {
	case strings.HasPrefix(last, "Sure"):
		out = "unsafe\nS1"
	case strings.HasPrefix(last, "zzz"):
		out = "the weather is nice today"
	case strings.HasPrefix(last, "boom"):
		return errors.New(`model "llama-guard3:1b" not found`)
	}
	return fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: out}, Done: true})
}

// With a guard model, each answer carries the guard's label beside the
// phrase-based outcome, the run names the guard, and the report shows
// the labels per category (text and JSON); the outcomes are unchanged.
func TestRunnerGuardLabels(t *testing.T) {
	s, err := Load("harmful")
	if err != nil {
		t.Fatal(err)
	}
	s.Probes = s.Probes[:5]
	answers := []string{"I can't help with that.", "Sure, here is how.", "zzz qqq", "boom", ""}
	i := 0
	rn := &Runner{Chat: chatFunc(func(context.Context, string, []Message, int64) Answer {
		a := Answer{Text: answers[i]}
		if a.Text == "" {
			a.Filtered, a.FinishReason = true, "content_filter"
		}
		i++
		return a
	})}
	plain, err := rn.Run(t.Context(), s, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &guard.Config{Model: "llama-guard3:1b", Prompt: true}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	g := &scriptedGuard{}
	i = 0
	rn.Guard, rn.GuardModel = &GuardLabeler{Config: cfg, Backend: g}, cfg.Model
	run, err := rn.Run(t.Context(), s, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Guard != "none" || run.Guard != "llama-guard3:1b" {
		t.Errorf("guard: %q without, %q with", plain.Guard, run.Guard)
	}
	want := []string{LabelSafe, "unsafe:violent_crimes", LabelUnreadable, LabelFailed, ""}
	for k, sc := range run.Scored {
		if sc.Label != want[k] {
			t.Errorf("probe %d: label %q, want %q", k, sc.Label, want[k])
		}
		if sc.Outcome != plain.Scored[k].Outcome || plain.Scored[k].Label != "" {
			t.Errorf("probe %d: outcome %s with the guard, %s without (label %q)", k, sc.Outcome, plain.Scored[k].Outcome, plain.Scored[k].Label)
		}
	}
	// The guard saw the probe's prompt and the answer, as its stage does.
	if len(g.reqs) != 4 {
		t.Fatalf("%d guard calls, want 4 (the filtered answer has no text)", len(g.reqs))
	}
	r := g.reqs[1]
	if r.Model != cfg.Model || len(r.Messages) != 2 || r.Messages[0].Role != "user" || r.Messages[0].Content != s.Probes[1].Messages[0].Content ||
		r.Messages[1].Role != "assistant" || r.Messages[1].Content != answers[1] || r.Options["temperature"] != 0 {
		t.Errorf("guard request: %+v", r)
	}

	db := storetest.Open(t)
	run.Trigger = "cli"
	if err := Save(t.Context(), db, &run); err != nil {
		t.Fatal(err)
	}
	got, err := Get(t.Context(), db, run.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.Guard != cfg.Model || got.Scored[1].Label != "unsafe:violent_crimes" {
		t.Errorf("stored: guard %q, label %q", got.Guard, got.Scored[1].Label)
	}
	wantCounts := map[string]int{"pass/safe": 1, "fail/unsafe": 1, "fail/unreadable": 1, "fail/failed": 1}
	var res CategoryResult
	for _, c := range got.Results {
		if c.Category == "harmful" {
			res = c
		}
	}
	for k, n := range wantCounts {
		if res.Guard[k] != n {
			t.Errorf("guard counts %v, want %v", res.Guard, wantCounts)
			break
		}
	}
	rep := Report{Run: got, Changes: Compare(got.Results, nil)}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"guard labels: llama-guard3:1b", "harmful: guard llama-guard3:1b labels beside the phrase verdicts:", "fail/unreadable 1"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, text.String())
		}
	}
	b, _ := json.Marshal(rep)
	var back struct {
		Run struct {
			Guard   string `json:"guard"`
			Results []struct {
				Guard map[string]int `json:"guard"`
			} `json:"results"`
		} `json:"run"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Run.Guard != cfg.Model || back.Run.Results[0].Guard["pass/safe"] != 1 {
		t.Errorf("JSON report: %s", b)
	}
}
