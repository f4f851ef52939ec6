package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
)

// TestRPMCountsEveryRequest: an rpm 1 key's requests are counted when
// the key is authenticated, whatever they are: after its one request, a
// flood of GET /v1/models, bad bodies and unknown models all get 429
// with Retry-After and the x-ratelimit headers, before any body is read.
func TestRPMCountsEveryRequest(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{})
	_, token := k.key(t, `{"name":"slow","limits":{"rpm":1}}`)

	if _, err := k.sdk(token).Models.List(t.Context()); err != nil {
		t.Fatalf("first request: %v", err)
	}
	for i := range 20 {
		_, err := k.sdk(token).Models.List(t.Context())
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("GET /v1/models #%d over rpm 1: %v, want 429", i+2, err)
		}
	}
	for _, tt := range []struct{ name, path, body string }{
		{"models", "/v1/models", ""},
		{"bad body", "/v1/chat/completions", `{"model":`},
		{"invalid field", "/v1/chat/completions", `{"model":"demo","messages":[]}`},
		{"unknown model", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`},
	} {
		method := http.MethodPost
		if tt.body == "" {
			method = http.MethodGet
		}
		resp, out := k.do(t, method, tt.path, token, tt.body)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(out, "rate_limit_exceeded") {
			t.Errorf("%s over rpm 1: %d %s, want 429 rate_limit_exceeded", tt.name, resp.StatusCode, out)
			continue
		}
		if resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Ratelimit-Limit-Requests") != "1" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
			t.Errorf("%s: 429 headers %v", tt.name, resp.Header)
		}
	}
	// Another key is not affected.
	_, other := k.key(t, `{"name":"other","limits":{"rpm":1}}`)
	if _, err := k.sdk(other).Models.List(t.Context()); err != nil {
		t.Errorf("another key's first request: %v", err)
	}
}

// TestForbiddenModelLooksMissing: a key limited to some models gets the
// same 404 model_not_found for a model that exists but is not its as for
// one that does not exist, on every route.
func TestForbiddenModelLooksMissing(t *testing.T) {
	b := &fakeBackend{
		chat:     scripted("hi"),
		generate: scriptedGenerate("hi"),
		embed: func(context.Context, *api.EmbedRequest) (*api.EmbedResponse, error) {
			return &api.EmbedResponse{Embeddings: [][]float32{make([]float32, 64)}}, nil
		},
		models: []string{"demo:latest", "other:latest"},
	}
	k := newKeyed(t, b, Config{})
	_, token := k.key(t, `{"name":"other-only","scopes":["chat","completions","embeddings","models"],"models":["other*"]}`)

	routes := []struct {
		name, method, path, body string
	}{
		{"chat", http.MethodPost, "/v1/chat/completions", `{"model":"MODEL","messages":[{"role":"user","content":"hi"}]}`},
		{"completions", http.MethodPost, "/v1/completions", `{"model":"MODEL","prompt":"hi"}`},
		{"embeddings", http.MethodPost, "/v1/embeddings", `{"model":"MODEL","input":"hi"}`},
		{"get model", http.MethodGet, "/v1/models/MODEL", ""},
	}
	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			answer := func(model string) (int, string) {
				resp, out := k.do(t, r.method, strings.ReplaceAll(r.path, "MODEL", model), token, strings.ReplaceAll(r.body, "MODEL", model))
				// The name is the only difference allowed.
				return resp.StatusCode, strings.ReplaceAll(out, model, "MODEL")
			}
			fs, forbidden := answer("demo")
			ms, missing := answer("nosuch")
			if fs != http.StatusNotFound || !strings.Contains(forbidden, codeModelNotFound) {
				t.Errorf("existing model the key may not use: %d %s, want 404 %s", fs, forbidden, codeModelNotFound)
			}
			if fs != ms || forbidden != missing {
				t.Errorf("forbidden and missing models differ:\n%d %s\n%d %s", fs, forbidden, ms, missing)
			}
			if s, out := answer("other"); s != http.StatusOK {
				t.Errorf("the key's own model: %d %s", s, out)
			}
		})
	}
}
