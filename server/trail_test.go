package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/audit"
)

// fakeAuditor records what it is given in a shared event log, or fails.
type fakeAuditor struct {
	mu     sync.Mutex
	events *[]string
	recs   []audit.Record
	fail   func(audit.Record) error
}

func (f *fakeAuditor) Append(_ context.Context, r audit.Record) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(r); err != nil {
			return 0, err
		}
	}
	*f.events = append(*f.events, string(r.Kind))
	f.recs = append(f.recs, r)
	return int64(len(f.recs)), nil
}

func TestAuditOrderAndFields(t *testing.T) {
	for _, stream := range []bool{false, true} {
		var events []string
		aud := &fakeAuditor{events: &events}
		b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
			events = append(events, "backend")
			return scripted("hel", "lo")(ctx, req, fn)
		}}
		ts := newTestServer(t, b, Config{Audit: aud})
		body := `{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
		resp, out := post(t, ts, "/v1/chat/completions", "", body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, out)
		}
		if got := strings.Join(events, ","); got != "request,backend,completion" {
			t.Errorf("stream=%v: order %s, want request,backend,completion", stream, got)
		}
		if len(aud.recs) != 2 {
			t.Fatalf("records %d", len(aud.recs))
		}
		req, done := aud.recs[0], aud.recs[1]
		if req.KeyID != "k1" || req.RequestID == "" || req.RequestID != done.RequestID || req.PromptSHA256 == "" || req.Endpoint != "POST /v1/chat/completions" {
			t.Errorf("request record %+v", req)
		}
		if done.Model != "demo:latest" || done.ModelDigest == "" || done.Status != 200 || done.FinishReason != "stop" || done.ResponseSHA256 == "" || done.TokensOut != 2 {
			t.Errorf("completion record %+v", done)
		}
		if stream && done.Response != "hello" {
			t.Errorf("stream response text %q, want the delivered text", done.Response)
		}
	}
}

func TestAuditFailsClosed(t *testing.T) {
	var events []string
	called := false
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		called = true
		return scripted("x")(ctx, req, fn)
	}}
	full := errors.New("database or disk is full")
	aud := &fakeAuditor{events: &events, fail: func(audit.Record) error { return full }}
	ts := newTestServer(t, b, Config{Audit: aud})
	resp, out := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(out, "audit_unavailable") || called {
		t.Errorf("status %d %s, backend called %v; want 503 audit_unavailable and no backend call", resp.StatusCode, out, called)
	}

	// The completion record fails: the answer is withheld.
	aud.fail = func(r audit.Record) error {
		if r.Kind == audit.KindCompletion {
			return full
		}
		return nil
	}
	for _, stream := range []string{"false", "true"} {
		resp, out = post(t, ts, "/v1/chat/completions", "", `{"model":"demo","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`)
		if strings.Contains(out, `"finish_reason":"stop"`) || strings.Contains(out, "[DONE]") || !strings.Contains(out, "audit_unavailable") {
			t.Errorf("stream=%s: completion record failed but the answer was released: %d %s", stream, resp.StatusCode, out)
		}
	}

	// fail_open serves anyway.
	ts = newTestServer(t, b, Config{Audit: &fakeAuditor{events: &events, fail: func(audit.Record) error { return full }}, AuditFailOpen: true})
	if resp, out := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Errorf("fail_open: %d %s", resp.StatusCode, out)
	}
}

func TestAuditErrorAnswersGetCompletionRecords(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	ts := newTestServer(t, &fakeBackend{}, Config{Audit: aud})
	resp, _ := post(t, ts, "/v1/chat/completions", "", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 404 || strings.Join(events, ",") != "request,completion" || aud.recs[1].Status != 404 {
		t.Errorf("404: events %v records %+v", events, aud.recs)
	}
	// Refused keys are not recorded one by one (the aggregator counts them).
	events = nil
	postKey(t, ts, "/v1/chat/completions", "", `{}`, "bad")
	if len(events) != 0 {
		t.Errorf("refused key produced records %v", events)
	}
}
