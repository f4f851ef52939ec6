package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	ollamaopenai "github.com/ollama/ollama/openai"
	"github.com/openai/openai-go/v3"
)

func chatMessageOf(role string, content any) ollamaopenai.Message {
	return ollamaopenai.Message{Role: role, Content: content}
}

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

// TestEmptyTextPartsAreCharged: 3,000 empty text parts are 3,000
// separators in the prompt the backend renders: the estimate counts them
// (a key whose max_input_tokens is 2,999 is refused), and when the
// backend counts more prompt tokens than were reserved, the key is charged
// the real count.
func TestEmptyTextPartsAreCharged(t *testing.T) {
	const realPrompt = 10000 // what the backend reports: more than the estimate
	b := &fakeBackend{chat: func(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: "ok"}}); err != nil {
			return err
		}
		return fn(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: realPrompt, EvalCount: 1}})
	}}
	k := newKeyed(t, b, Config{})
	parts := make([]openai.ChatCompletionContentPartUnionParam, 3000)
	for i := range parts {
		parts[i] = openai.TextContentPart("")
	}
	params := openai.ChatCompletionNewParams{Model: "demo", MaxTokens: openai.Int(1),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)}}

	_, capped := k.key(t, `{"name":"capped","limits":{"max_input_tokens":2999}}`)
	_, err := k.sdk(capped).Chat.Completions.New(t.Context(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != codeContextExceeded {
		t.Errorf("3,000 empty parts under max_input_tokens 2999: %v, want 400 %s", err, codeContextExceeded)
	}

	id, token := k.key(t, `{"name":"payer","limits":{"tokens_per_day":1000000}}`)
	if _, err := k.sdk(token).Chat.Completions.New(t.Context(), params); err != nil {
		t.Fatal(err)
	}
	resp, out := k.do(t, http.MethodGet, "/admin/keys/"+id+"/usage", k.admin, "")
	var u struct {
		Usage struct {
			TokensToday int64 `json:"tokens_today"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("usage: %d %s", resp.StatusCode, out)
	}
	if got, want := u.Usage.TokensToday, int64(realPrompt+1); got != want {
		t.Errorf("charged %d tokens, want the backend's real count %d", got, want)
	}
}

// TestEstimateCountsSeparators: the estimate of a chat counts each text
// part's separator, so empty parts are not free.
func TestEstimateCountsSeparators(t *testing.T) {
	var req chatRequest
	parts := make([]any, 3000)
	for i := range parts {
		parts[i] = map[string]any{"type": "text", "text": ""}
	}
	req.Messages = append(req.Messages, chatMessageOf("user", parts))
	if got := estimateChat(&req); got < 3000 {
		t.Errorf("estimate of 3,000 empty parts = %d, want at least 3000", got)
	}
}
