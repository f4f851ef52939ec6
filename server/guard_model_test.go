package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	dto "github.com/prometheus/client_model/go"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/guard"
)

// The guard-model stage through real HTTP requests and the official
// client, with a scripted backend answering both the model ("demo") and
// the guard model ("guard"): the guard's verdicts have to be chosen. The
// real child runs it end to end in cmd/warden.

// guardBackend answers the guard model with verdict and every other model
// with the pieces of answer, and records the guard's requests.
type guardBackend struct {
	verdict func(ctx context.Context, msgs []api.Message) (string, error)
	answer  []string

	mu     sync.Mutex
	guards []*api.ChatRequest
	main   int
}

func (g *guardBackend) chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	if req.Model != "guard" {
		g.mu.Lock()
		g.main++
		g.mu.Unlock()
		return scripted(g.answer...)(ctx, req, fn)
	}
	g.mu.Lock()
	g.guards = append(g.guards, req)
	g.mu.Unlock()
	out, err := g.verdict(ctx, req.Messages)
	if err != nil {
		return err
	}
	// The guard's own token counts are large, so that charging them
	// would show.
	return fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: out}, Done: true, DoneReason: "stop",
		Metrics: api.Metrics{PromptEvalCount: 500, EvalCount: 500}})
}

func (g *guardBackend) calls() (guards []*api.ChatRequest, main int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.guards), g.main
}

// say is a guard that always answers out.
func say(out string) func(context.Context, []api.Message) (string, error) {
	return func(context.Context, []api.Message) (string, error) { return out, nil }
}

// hang is a guard that never answers: only its timeout ends the call.
func hang(ctx context.Context, _ []api.Message) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// guardMissing is a guard model the backend does not have.
func guardMissing(context.Context, []api.Message) (string, error) {
	return "", errors.New(`model "guard" not found, try pulling it first`)
}

// onAnswer judges answers only when the answer is unsafe: the prompt is
// judged safe.
func onAnswer(out string) func(context.Context, []api.Message) (string, error) {
	return func(_ context.Context, msgs []api.Message) (string, error) {
		if msgs[len(msgs)-1].Role == "assistant" {
			return out, nil
		}
		return "safe", nil
	}
}

func guardConfig(open bool, on ...string) *guard.Config {
	c := &guard.Config{Model: "guard", FailOpen: open, Timeout: 50 * time.Millisecond,
		Prompt: slices.Contains(on, "prompt"), Answer: slices.Contains(on, "answer")}
	if err := c.Check(); err != nil {
		panic(err)
	}
	return c
}

func guardFilter(t *testing.T, g *guard.Config, profiles map[string]filter.ProfileConfig) *filter.Engine {
	t.Helper()
	return testFilter(t, profiles, g.AllCategories()...)
}

// decisions reads the safety decisions of the last completion record.
func decisions(t *testing.T, aud *fakeAuditor) []filter.Decision {
	t.Helper()
	aud.mu.Lock()
	defer aud.mu.Unlock()
	for _, r := range slices.Backward(aud.recs) {
		if r.Kind != "completion" {
			continue
		}
		if r.Safety == nil {
			return nil
		}
		var s filter.Summary
		if err := json.Unmarshal(r.Safety, &s); err != nil {
			t.Fatal(err)
		}
		return s.Decisions
	}
	t.Fatal("no completion record")
	return nil
}

func TestGuardPrompt(t *testing.T) {
	passed := filter.Decision{Direction: filter.Input, Category: guard.CatPassed, Action: filter.Allow, Count: 1}
	tests := []struct {
		name    string
		verdict func(context.Context, []api.Message) (string, error)
		open    bool
		status  int
		code    string
		message string // in the refusal
		want    []filter.Decision
	}{
		{"safe", say("safe"), false, 200, "", "", []filter.Decision{passed}},
		{"unsafe", say("unsafe\nS1,S10"), false, 400, "content_filter", "(hate, violent_crimes)", []filter.Decision{
			{Direction: filter.Input, Category: "hate", Action: filter.Block, Count: 1},
			{Direction: filter.Input, Category: "violent_crimes", Action: filter.Block, Count: 1},
		}},
		{"unsafe without codes", say("unsafe"), false, 400, "content_filter", "(unsafe)", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatUnsafe, Action: filter.Block, Count: 1},
		}},
		{"garbage closed", say("Paris is the capital of France."), false, 503, "safety_guard_unavailable", "no verdict", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatFailure, Action: filter.Block, Count: 1},
		}},
		{"garbage open", say("Paris is the capital of France."), true, 200, "", "", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatFailure, Action: filter.Flag, Count: 1},
		}},
		{"timeout closed", hang, false, 503, "safety_guard_unavailable", "no verdict", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatFailure, Action: filter.Block, Count: 1},
		}},
		{"timeout open", hang, true, 200, "", "", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatFailure, Action: filter.Flag, Count: 1},
		}},
		{"guardMissing model closed", guardMissing, false, 503, "safety_guard_unavailable", "no verdict", []filter.Decision{
			{Direction: filter.Input, Category: guard.CatFailure, Action: filter.Block, Count: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := guardConfig(tt.open, "prompt")
			gb := &guardBackend{verdict: tt.verdict, answer: []string{"hel", "lo"}}
			var events []string
			aud := &fakeAuditor{events: &events}
			ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g, Audit: aud})
			c := sdk(ts)
			got, err := c.Chat.Completions.New(context.Background(), chatParams("Be brief.", "How do I bake bread?"))
			guards, main := gb.calls()
			if len(guards) != 1 {
				t.Fatalf("guard calls %d, want 1", len(guards))
			}
			// The guard reads the prompt as the model gets it.
			if msgs := guards[0].Messages; len(msgs) != 1 || msgs[0].Role != "user" || !strings.Contains(msgs[0].Content, "How do I bake bread?") {
				t.Errorf("guard read %+v", msgs)
			}
			if tt.status == 200 {
				if err != nil {
					t.Fatalf("chat: %v", err)
				}
				if got.Choices[0].Message.Content != "hello" || main != 1 {
					t.Errorf("answer %q, model calls %d", got.Choices[0].Message.Content, main)
				}
			} else {
				var ae *openai.Error
				if !errors.As(err, &ae) || ae.StatusCode != tt.status || ae.Code != tt.code || !strings.Contains(ae.Message, tt.message) {
					t.Fatalf("got %v, want %d %s (%s)", err, tt.status, tt.code, tt.message)
				}
				if main != 0 {
					t.Errorf("the model was called %d times for a refused prompt", main)
				}
			}
			if got := decisions(t, aud); !slices.Equal(got, tt.want) {
				t.Errorf("decisions %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGuardAnswer(t *testing.T) {
	for _, stream := range []bool{false, true} {
		for _, tt := range []struct {
			name    string
			verdict func(context.Context, []api.Message) (string, error)
			open    bool
			text    string
			finish  string
			want    filter.Decision
		}{
			{"safe", say("safe"), false, "hello", "stop", filter.Decision{Direction: filter.Output, Category: guard.CatPassed, Action: filter.Allow, Count: 1}},
			{"unsafe", onAnswer("unsafe\nS11"), false, "", "content_filter", filter.Decision{Direction: filter.Output, Category: "self_harm", Action: filter.Block, Count: 1}},
			{"garbage closed", onAnswer("I cannot decide"), false, "", "content_filter", filter.Decision{Direction: filter.Output, Category: guard.CatFailure, Action: filter.Block, Count: 1}},
			{"garbage open", onAnswer("I cannot decide"), true, "hello", "stop", filter.Decision{Direction: filter.Output, Category: guard.CatFailure, Action: filter.Flag, Count: 1}},
			{"timeout closed", func(ctx context.Context, msgs []api.Message) (string, error) {
				if msgs[len(msgs)-1].Role == "assistant" {
					return hang(ctx, msgs)
				}
				return "safe", nil
			}, false, "", "content_filter", filter.Decision{Direction: filter.Output, Category: guard.CatFailure, Action: filter.Block, Count: 1}},
		} {
			t.Run(tt.name+map[bool]string{true: " stream"}[stream], func(t *testing.T) {
				g := guardConfig(tt.open, "prompt", "answer")
				gb := &guardBackend{verdict: tt.verdict, answer: []string{"hel", "lo"}}
				var events []string
				aud := &fakeAuditor{events: &events}
				ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g, Audit: aud})
				c := sdk(ts)
				p := chatParams("", "Tell me something.")
				var text, finish string
				if stream {
					text, _, finish = streamText(t, c, p)
				} else {
					got, err := c.Chat.Completions.New(context.Background(), p)
					if err != nil {
						t.Fatal(err)
					}
					text, finish = got.Choices[0].Message.Content, got.Choices[0].FinishReason
				}
				if text != tt.text || finish != tt.finish {
					t.Errorf("answer %q (%s), want %q (%s)", text, finish, tt.text, tt.finish)
				}
				guards, _ := gb.calls()
				if len(guards) != 2 {
					t.Fatalf("guard calls %d, want 2 (prompt, answer)", len(guards))
				}
				msgs := guards[1].Messages
				if last := msgs[len(msgs)-1]; last.Role != "assistant" || last.Content != "hello" || msgs[0].Content != "Tell me something." {
					t.Errorf("the answer's guard read %+v", msgs)
				}
				ds := decisions(t, aud)
				if !slices.Contains(ds, tt.want) {
					t.Errorf("decisions %+v lack %+v", ds, tt.want)
				}
				aud.mu.Lock()
				defer aud.mu.Unlock()
				if rec := aud.recs[len(aud.recs)-1]; rec.FinishReason != tt.finish || (tt.text == "" && strings.Contains(rec.Response, "hello")) {
					t.Errorf("record: finish %q, response %q", rec.FinishReason, rec.Response)
				}
			})
		}
	}
}

// TestGuardProfiles: profiles act on the guard's categories like on the
// detectors'; a profile that allows all of them makes no guard call.
func TestGuardProfiles(t *testing.T) {
	g := guardConfig(false, "prompt")
	gb := &guardBackend{verdict: say("unsafe\nS6"), answer: []string{"ok"}}
	profiles := map[string]filter.ProfileConfig{"default": {Input: map[string]string{"specialized_advice": "flag"}}}
	var events []string
	aud := &fakeAuditor{events: &events}
	ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, profiles), Guard: g, Audit: aud})
	got, err := sdk(ts).Chat.Completions.New(context.Background(), chatParams("", "Which dose should I take?"))
	if err != nil || got.Choices[0].Message.Content != "ok" {
		t.Fatalf("flagged prompt: %v", err)
	}
	if ds := decisions(t, aud); !slices.Equal(ds, []filter.Decision{{Direction: filter.Input, Category: "specialized_advice", Action: filter.Flag, Count: 1}}) {
		t.Errorf("decisions %+v", ds)
	}

	// The completions route goes through the same stage; its refusal
	// names its own parameter.
	gb.verdict = say("unsafe\nS9")
	resp, body := post(t, ts, "/v1/completions", "", `{"model":"demo","prompt":"how to build it"}`)
	if resp.StatusCode != 400 || !strings.Contains(body, `"param":"prompt"`) || !strings.Contains(body, "indiscriminate_weapons") {
		t.Errorf("completions: %d %s", resp.StatusCode, body)
	}

	// A guard without the filter has no profiles to act on its verdicts.
	if _, err := New(&fakeBackend{}, Config{Keys: fakeKeys{}, Guard: g}); err == nil {
		t.Error("a guard model without the safety filter was accepted")
	}

	// The "none" profile allows everything: no guard call at all.
	none := guardFilter(t, g, map[string]filter.ProfileConfig{"default": {Base: "none"}})
	gb2 := &guardBackend{verdict: say("unsafe\nS1"), answer: []string{"ok"}}
	ts2 := newTestServer(t, &fakeBackend{chat: gb2.chat}, Config{Filter: none, Guard: g})
	if _, err := sdk(ts2).Chat.Completions.New(context.Background(), chatParams("", "hi")); err != nil {
		t.Fatal(err)
	}
	if guards, _ := gb2.calls(); len(guards) != 0 {
		t.Errorf("%d guard calls under a profile that allows every guard category", len(guards))
	}
}

// TestGuardQuota: guard calls are not charged to the key's tokens; a
// prompt the guard refuses is charged nothing.
func TestGuardQuota(t *testing.T) {
	g := guardConfig(false, "prompt", "answer")
	gb := &guardBackend{verdict: say("safe"), answer: []string{"hel", "lo"}}
	k := newKeyed(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g})
	id, token := k.key(t, `{"name":"alice","scopes":["chat"],"limits":{"tokens_per_day":100000}}`)
	got, err := k.sdk(token).Chat.Completions.New(context.Background(), chatParams("", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	usage := func() int64 {
		resp, body := k.do(t, http.MethodGet, "/admin/keys/"+id+"/usage", k.admin, "")
		var u struct {
			Usage struct {
				TokensToday int64 `json:"tokens_today"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(body), &u); err != nil || resp.StatusCode != 200 {
			t.Fatalf("usage: %d %s", resp.StatusCode, body)
		}
		return u.Usage.TokensToday
	}
	if guards, _ := gb.calls(); len(guards) != 2 {
		t.Fatalf("guard calls %d, want 2", len(guards))
	}
	want := got.Usage.TotalTokens
	if u := usage(); u != want || want != 5 {
		t.Fatalf("tokens today %d, want the model's %d (3 + 2), not the guard's 2000", u, want)
	}
	gb.verdict = say("unsafe\nS1")
	if _, err := k.sdk(token).Chat.Completions.New(context.Background(), chatParams("", "hi")); err == nil {
		t.Fatal("refused prompt answered")
	}
	if u := usage(); u != want {
		t.Errorf("tokens today %d after a refused prompt, want %d", u, want)
	}
}

// TestGuardMetricsAndLog: calls, verdicts, failures and latency are
// counted; a failing guard is logged once per burst, naming the mode.
func TestGuardMetricsAndLog(t *testing.T) {
	g := guardConfig(false, "prompt")
	gb := &guardBackend{verdict: say("safe"), answer: []string{"ok"}}
	var logs testlog.Buffer
	m := NewMetrics()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var events []string
	ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g, Metrics: m, Audit: &fakeAuditor{events: &events},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	c := sdk(ts)
	for _, v := range []string{"safe", "unsafe\nS1", "garbage", "garbage", "garbage"} {
		gb.verdict = say(v)
		_, _ = c.Chat.Completions.New(context.Background(), chatParams("", "hi"))
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"warden_guard_calls_total", map[string]string{"stage": "prompt", "verdict": "safe"}, 1},
		{"warden_guard_calls_total", map[string]string{"stage": "prompt", "verdict": "unsafe"}, 1},
		{"warden_guard_calls_total", map[string]string{"stage": "prompt", "verdict": "failed"}, 3},
		{"warden_guard_failures_total", map[string]string{"stage": "prompt", "reason": "unreadable"}, 3},
		{"warden_guard_duration_seconds", map[string]string{"stage": "prompt"}, 5},
		{"warden_safety_findings_total", map[string]string{"direction": "input", "category": "violent_crimes", "action": "block"}, 1},
		{"warden_safety_findings_total", map[string]string{"direction": "input", "category": guard.CatFailure, "action": "block"}, 3},
	} {
		if got := metricValue(t, m, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if n := strings.Count(logs.String(), `msg="safety guard model gave no verdict"`); n != 1 {
		t.Errorf("failure logged %d times, want once per burst:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "failure=closed") || !strings.Contains(logs.String(), "model=guard") {
		t.Errorf("log line lacks the mode or model:\n%s", logs.String())
	}
}

// metricValue is a counter's value, or a histogram's sample count, for
// the series with labels.
func metricValue(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if !hasLabels(s, labels) {
				continue
			}
			if h := s.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return s.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabels(s *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range s.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// TestGuardHostileInput: prompts the detectors already survive reach the
// guard whole, and whatever the guard answers ends in a verdict or the
// failure mode, never a 5xx other than the closed mode's 503.
func TestGuardHostileInput(t *testing.T) {
	g := guardConfig(false, "prompt", "answer")
	outs := []string{"safe", strings.Repeat("unsafe\n", 2000), "\xff\xfe", "unsafe\n" + strings.Repeat("S1,", 5000), "", "unsafe\n\u200bS1"}
	prompts := []string{strings.Repeat("a", 1<<20), "\u200b\u200c" + strings.Repeat("\u200d", 10000) + "hi", strings.Repeat("x", 70000) + " " + strings.Repeat("y", 70000)}
	for _, out := range outs {
		gb := &guardBackend{verdict: say(out), answer: []string{"ok"}}
		ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g, MaxBodyBytes: 4 << 20})
		for _, p := range prompts {
			body, _ := json.Marshal(map[string]any{"model": "demo", "messages": []map[string]string{{"role": "user", "content": p}}})
			resp, text := post(t, ts, "/v1/chat/completions", "", string(body))
			if resp.StatusCode != 200 && resp.StatusCode != 400 && resp.StatusCode != 503 {
				t.Errorf("guard %.20q, prompt %.20q: %d %.200s", out, p, resp.StatusCode, text)
			}
			if resp.StatusCode == 503 && !strings.Contains(text, "safety_guard_unavailable") {
				t.Errorf("guard %.20q: 503 %.200s", out, text)
			}
		}
	}
}

// BenchmarkGuard measures what the guard stage adds to a request in
// Warden itself (building the guard's messages, the extra backend call
// through the scheduler seam, parsing, recording) against a scripted
// guard that answers at once: the model's own time comes on top (see
// docs/safety.md for it measured on the real child).
func BenchmarkGuard(b *testing.B) {
	for _, c := range []struct {
		name   string
		on     []string
		stream bool
	}{{"no-guard", nil, false}, {"prompt", []string{"prompt"}, false}, {"prompt-answer", []string{"prompt", "answer"}, false},
		{"stream-no-guard", nil, true}, {"stream-prompt-answer", []string{"prompt", "answer"}, true}} {
		b.Run(c.name, func(b *testing.B) {
			t := &testing.T{}
			gb := &guardBackend{verdict: say("safe"), answer: []string{"a", "b", "c", "d", "e", "f", "g", "h"}}
			var g *guard.Config
			if c.on != nil {
				g = guardConfig(false, c.on...)
			} else {
				g = guardConfig(false, "prompt") // for the filter's categories only
			}
			cfg := Config{Filter: guardFilter(t, g, nil)}
			if c.on != nil {
				cfg.Guard = g
			}
			ts := newTestServer(t, &fakeBackend{chat: gb.chat}, cfg)
			defer ts.Close()
			body := `{"model":"demo","messages":[{"role":"user","content":"Say something."}],"max_tokens":8,"stream":` + map[bool]string{true: "true", false: "false"}[c.stream] + `}`
			benchPosts(b, ts.URL+"/v1/chat/completions", "Authorization", "Bearer good", body)
			gb.mu.Lock()
			gb.guards = nil // the recorded requests are not part of the cost
			gb.mu.Unlock()
		})
	}
}

// TestGuardClientGone: a client that leaves while the guard judges its
// prompt ends the guard call with it; that is a request the client left
// before it reached the model (499, counted with the key's refusals, as
// without a guard), not a guard failure.
func TestGuardClientGone(t *testing.T) {
	g := guardConfig(false, "prompt")
	g.Timeout = time.Hour // only the client's leaving can end the call
	started, ended := make(chan struct{}), make(chan struct{})
	gb := &guardBackend{answer: []string{"ok"}, verdict: func(ctx context.Context, _ []api.Message) (string, error) {
		close(started)
		<-ctx.Done()
		close(ended)
		return "", ctx.Err()
	}}
	m := NewMetrics()
	refused := make(chan int, 1)
	ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g, Metrics: m,
		Audit: &fakeAuditor{events: new([]string)}, OnRequestRefused: func(_, _ string, status int) { refused <- status }})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	if _, err := sdk(ts).Chat.Completions.New(ctx, chatParams("", "hi")); err == nil {
		t.Fatal("a cancelled request was answered")
	}
	<-ended
	if status := <-refused; status != statusClientClosed {
		t.Errorf("refused with %d, want %d", status, statusClientClosed)
	}
	if got := metricValue(t, m, "warden_guard_calls_total", map[string]string{"stage": "prompt"}); got != 0 {
		t.Errorf("a call the client ended counted as a guard call: %v", got)
	}
	if _, main := gb.calls(); main != 0 {
		t.Errorf("the model was called %d times", main)
	}
}

// FuzzGuardMessages: any chat request the server accepts becomes a
// guard conversation without a panic: alternating sides, no empty
// message, every text of the request kept.
func FuzzGuardMessages(f *testing.F) {
	addSeeds(f, "chat_*.in.json")
	f.Add([]byte(`{"model":"m","messages":[{"role":"system","content":"a"},{"role":"user","content":[{"type":"text","text":"b"},{"type":"text","text":""}]},{"role":"tool","content":"c"},{"role":"assistant","content":"d"},{"role":"assistant","content":"e"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req chatRequest
		if unmarshalBody(body, &req) != nil || req.validate() != nil {
			return
		}
		msgs := guardChat(req.Messages)
		for i, m := range msgs {
			if m.Content == "" || (m.Role != "user" && m.Role != "assistant") {
				t.Fatalf("message %d: %+v", i, m)
			}
			if i > 0 && msgs[i-1].Role == m.Role {
				t.Fatalf("messages %d and %d are both %s", i-1, i, m.Role)
			}
		}
		var all strings.Builder
		for _, m := range msgs {
			all.WriteString(m.Content)
		}
		for i := range req.Messages {
			for _, ts := range messageTexts(&req.Messages[i]) {
				if !strings.Contains(all.String(), ts.text) {
					t.Fatalf("text %q of message %d lost", ts.text, i)
				}
			}
		}
	})
}
