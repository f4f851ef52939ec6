package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"
)

// showBackend is a fakeBackend whose models have the given capabilities.
type showBackend struct {
	*fakeBackend
	caps []model.Capability
}

func (b showBackend) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	r, err := b.fakeBackend.Show(ctx, req)
	if err == nil {
		r.Capabilities = b.caps
	}
	return r, err
}

// TestAgentRoutesRelaxThinking: Claude Code asks for thinking and Codex
// CLI for a reasoning effort whatever the model; a model that cannot think
// gets the request without it (the backend would refuse it), one that can
// gets it.
func TestAgentRoutesRelaxThinking(t *testing.T) {
	bodies := map[string]string{
		"/v1/messages":  `{"model":"demo","max_tokens":8,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hi"}]}`,
		"/v1/responses": `{"model":"demo","reasoning":{"effort":"medium"},"input":"hi"}`,
	}
	for _, thinks := range []bool{false, true} {
		caps := []model.Capability{model.CapabilityCompletion, model.CapabilityTools}
		if thinks {
			caps = append(caps, model.CapabilityThinking)
		}
		rec := &recorder{pieces: []string{"ok"}}
		b := showBackend{&fakeBackend{chat: rec.chat, models: []string{"demo:latest"}}, caps}
		s, err := New(b, Config{Keys: fakeKeys{}})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		t.Cleanup(ts.Close)
		for path, body := range bodies {
			resp, out := post(t, ts, path, "application/json", body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, out)
			}
			got := rec.got[len(rec.got)-1].Think
			if got.Bool() != thinks {
				t.Errorf("%s to a model that thinks=%v: backend think %v", path, thinks, got)
			}
		}
	}
}
