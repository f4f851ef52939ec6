package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// The server on the real key manager, key cache and limiter over a
// SQLite file in a temp dir, with a scripted backend: the admin API, the
// quota's headers and refusals, and the routes' streamed answers, without
// the built Ollama (the e2e tests in cmd/warden run it).

// keyed is a server whose keys and quotas are real.
type keyed struct {
	ts    *httptest.Server
	m     *keys.Manager
	cache *keys.Cache
	admin string // a token with the admin scope
}

func newKeyed(t *testing.T, b *fakeBackend, cfg Config) *keyed {
	t.Helper()
	ctx := t.Context()
	db := storetest.Open(t)
	m := &keys.Manager{DB: db}
	cache := keys.NewCache(db, time.Hour, time.Now)
	if err := cache.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	lim := quota.New(db, quota.Config{Now: time.Now})
	t.Cleanup(func() { _ = lim.Close(context.Background()) })

	_, admin, err := m.Create(ctx, "test", keys.Spec{Name: "admin", Scopes: append(keys.DefaultScopes(), keys.ScopeAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if b.models == nil {
		b.models = []string{"demo:latest"}
	}
	cfg.Keys, cfg.Quota, cfg.Usage = cache, lim, lim
	cfg.Admin = keys.Admin{Manager: m, Cache: cache} // a write is seen by the cache at once, as in `warden serve`
	s, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &keyed{ts: ts, m: m, cache: cache, admin: admin}
}

// key makes a key through the admin API and returns its id and token.
func (k *keyed) key(t *testing.T, body string) (string, string) {
	t.Helper()
	resp, out := k.do(t, http.MethodPost, "/admin/keys", k.admin, body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d %s", resp.StatusCode, out)
	}
	var sb secretBody
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		t.Fatal(err)
	}
	return sb.ID, sb.Key
}

func (k *keyed) do(t *testing.T, method, path, token, body string) (*http.Response, string) {
	t.Helper()
	return send(t, method, k.ts.URL+path, "", body, token)
}

func (k *keyed) sdk(token string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(k.ts.URL+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	return &c
}

func TestAdminAPI(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{})
	id, token := k.key(t, `{"name":"alice","scopes":["chat","models"],"limits":{"rpm":100},"weight":3}`)

	// The new key works at once, and only for its scopes.
	if resp, body := k.do(t, http.MethodGet, "/v1/models", token, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("new key on /v1/models: %d %s", resp.StatusCode, body)
	}
	if resp, _ := k.do(t, http.MethodPost, "/v1/embeddings", token, `{"model":"demo","input":"x"}`); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("embeddings without the scope: got %d, want 403", resp.StatusCode)
	}
	if resp, _ := k.do(t, http.MethodGet, "/admin/keys", token, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin API with a non-admin key: got %d, want 403", resp.StatusCode)
	}
	if resp, _ := k.do(t, http.MethodGet, "/admin/keys", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin API without a key: got %d, want 401", resp.StatusCode)
	}

	// List and get show the key without its secret.
	resp, body := k.do(t, http.MethodGet, "/admin/keys", k.admin, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"alice"`) || strings.Contains(body, token) {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	var got keys.Key
	resp, body = k.do(t, http.MethodGet, "/admin/keys/"+id, k.admin, "")
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	if got.Name != "alice" || got.Limits.RPM != 100 || got.Weight != 3 {
		t.Errorf("get: %+v", got)
	}

	// Limits change only where the body says.
	resp, body = k.do(t, http.MethodPut, "/admin/keys/"+id+"/limits", k.admin, `{"tpm":5000}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set limits: %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Limits.RPM != 100 || got.Limits.TPM != 5000 || got.Weight != 3 {
		t.Errorf("after set limits: %+v (err %v)", got, err)
	}

	// Rotation: a new secret; the old one still works in its grace time.
	resp, body = k.do(t, http.MethodPost, "/admin/keys/"+id+"/rotate", k.admin, `{"grace":"1h"}`)
	var rot secretBody
	if err := json.Unmarshal([]byte(body), &rot); err != nil || resp.StatusCode != http.StatusOK || rot.Key == "" || rot.Key == token {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	for _, tok := range []string{token, rot.Key} {
		if resp, _ := k.do(t, http.MethodGet, "/v1/models", tok, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("after rotation with grace, a token got %d", resp.StatusCode)
		}
	}

	// Usage of a key, and of none.
	if resp, body := k.do(t, http.MethodGet, "/admin/keys/"+rot.ID+"/usage", k.admin, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"usage"`) {
		t.Errorf("usage: %d %s", resp.StatusCode, body)
	}

	// Revocation ends every token of the key; a second one is a conflict.
	if resp, body := k.do(t, http.MethodPost, "/admin/keys/"+rot.ID+"/revoke", k.admin, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	for _, tok := range []string{token, rot.Key} {
		if resp, _ := k.do(t, http.MethodGet, "/v1/models", tok, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("revoked token got %d, want 401", resp.StatusCode)
		}
	}
	// Revoking again changes nothing and says so.
	if resp, body := k.do(t, http.MethodPost, "/admin/keys/"+rot.ID+"/revoke", k.admin, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"revoked":"`) {
		t.Errorf("second revoke: %d %s", resp.StatusCode, body)
	}

	if resp, body := k.do(t, http.MethodGet, "/admin/gpu", k.admin, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"available":false`) {
		t.Errorf("gpu without telemetry: %d %s", resp.StatusCode, body)
	}
}

func TestAdminAPIRefusals(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{Filter: testFilter(t, nil)})
	id, _ := k.key(t, `{"name":"bob"}`)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown id", http.MethodGet, "/admin/keys/nosuchkey", "", 404, "key_not_found"},
		{"rotate unknown", http.MethodPost, "/admin/keys/nosuchkey/rotate", "", 404, "key_not_found"},
		{"revoke unknown", http.MethodPost, "/admin/keys/nosuchkey/revoke", "", 404, "key_not_found"},
		{"limits of unknown", http.MethodPut, "/admin/keys/nosuchkey/limits", `{"rpm":1}`, 404, "key_not_found"},
		{"usage of unknown", http.MethodGet, "/admin/keys/nosuchkey/usage", "", 404, "key_not_found"},
		{"bad scope", http.MethodPost, "/admin/keys", `{"name":"x","scopes":["root"]}`, 400, "invalid_value"},
		{"bad expiry", http.MethodPost, "/admin/keys", `{"name":"x","expires":"soon"}`, 400, "invalid_value"},
		{"unknown profile", http.MethodPost, "/admin/keys", `{"name":"x","profile":"strict"}`, 400, ""},
		{"unknown profile in limits", http.MethodPut, "/admin/keys/" + id + "/limits", `{"profile":"strict"}`, 400, "invalid_value"},
		{"not JSON", http.MethodPost, "/admin/keys", `name=x`, 400, ""},
		{"negative limit", http.MethodPut, "/admin/keys/" + id + "/limits", `{"rpm":-1}`, 400, "invalid_value"},
		{"bad grace", http.MethodPost, "/admin/keys/" + id + "/rotate", `{"grace":"forever"}`, 400, "invalid_value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := k.do(t, tc.method, tc.path, k.admin, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			var e struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
				t.Fatalf("not an OpenAI-shaped error: %s", body)
			}
			if tc.code != "" && e.Error.Code != tc.code {
				t.Errorf("code %q, want %q (%s)", e.Error.Code, tc.code, body)
			}
		})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{})
	_, token := k.key(t, `{"name":"tight","limits":{"rpm":2,"tpm":100000}}`)
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`
	for i := range 2 {
		resp, out := k.do(t, http.MethodPost, "/v1/chat/completions", token, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, out)
		}
		h := resp.Header
		if h.Get("X-Ratelimit-Limit-Requests") != "2" || h.Get("X-Ratelimit-Limit-Tokens") != "100000" {
			t.Errorf("request %d: limit headers %v", i, h)
		}
		if got, want := h.Get("X-Ratelimit-Remaining-Requests"), []string{"1", "0"}[i]; got != want {
			t.Errorf("request %d: remaining requests %q, want %q", i, got, want)
		}
		if h.Get("X-Ratelimit-Reset-Requests") == "" || h.Get("X-Ratelimit-Remaining-Tokens") == "" {
			t.Errorf("request %d: no reset or remaining tokens header", i)
		}
	}
	resp, out := k.do(t, http.MethodPost, "/v1/chat/completions", token, body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(out, "rate_limit_exceeded") {
		t.Fatalf("third request in a minute: %d %s", resp.StatusCode, out)
	}
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("429 headers: %v", resp.Header)
	}
}

// TestRateLimitHeadersBeforeAdmission: an answer given before admission
// (a refused body, the model list) has the x-ratelimit headers of the
// request just counted, like an admitted one.
func TestRateLimitHeadersBeforeAdmission(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{})
	_, token := k.key(t, `{"name":"five","limits":{"rpm":5,"tpm":100000}}`)
	for i, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"invalid body", http.MethodPost, "/v1/chat/completions", `{"model":"demo","messages":[]}`, http.StatusBadRequest},
		{"unknown model", http.MethodPost, "/v1/chat/completions", `{"model":"nosuch","messages":[{"role":"user","content":"hi"}]}`, http.StatusNotFound},
		{"model list", http.MethodGet, "/v1/models", "", http.StatusOK},
		{"admitted", http.MethodPost, "/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`, http.StatusOK},
	} {
		resp, out := k.do(t, tc.method, tc.path, token, tc.body)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: got %d %s, want %d", tc.name, resp.StatusCode, out, tc.status)
		}
		h := resp.Header
		if got, want := h.Get("X-Ratelimit-Remaining-Requests"), strconv.Itoa(4-i); got != want {
			t.Errorf("%s: remaining requests %q, want %q", tc.name, got, want)
		}
		if h.Get("X-Ratelimit-Limit-Requests") != "5" || h.Get("X-Ratelimit-Limit-Tokens") != "100000" || h.Get("X-Ratelimit-Reset-Tokens") == "" {
			t.Errorf("%s: limit headers %v", tc.name, h)
		}
	}
}

func TestOutputCapHeaderAndInputCap(t *testing.T) {
	var got *api.ChatRequest
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		got = req
		return scripted("ok")(ctx, req, fn)
	}}
	k := newKeyed(t, b, Config{})
	_, token := k.key(t, `{"name":"capped","limits":{"max_output_tokens":16,"max_input_tokens":100}}`)

	resp, out := k.do(t, http.MethodPost, "/v1/chat/completions", token, `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":500}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	if h := resp.Header.Get("X-Warden-Max-Tokens"); h != "16" {
		t.Errorf("X-Warden-Max-Tokens %q, want 16", h)
	}
	if got == nil || got.Options["num_predict"] != 16 {
		t.Errorf("backend num_predict: %v", got.Options["num_predict"])
	}

	long := strings.Repeat("word ", 200)
	resp, out = k.do(t, http.MethodPost, "/v1/chat/completions", token, `{"model":"demo","messages":[{"role":"user","content":"`+long+`"}]}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, codeContextExceeded) {
		t.Errorf("input over the key's cap: %d %s", resp.StatusCode, out)
	}
}

// scriptedGenerate answers a completion with the given pieces, then done.
func scriptedGenerate(pieces ...string) func(context.Context, *api.GenerateRequest, func(api.GenerateResponse) error) error {
	return func(_ context.Context, _ *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
		for _, p := range pieces {
			if err := fn(api.GenerateResponse{Response: p}); err != nil {
				return err
			}
		}
		return fn(api.GenerateResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 2, EvalCount: len(pieces)}})
	}
}

func TestStreamedCompletion(t *testing.T) {
	k := newKeyed(t, &fakeBackend{generate: scriptedGenerate("Once ", "upon ", "a ", "time")}, Config{})
	_, token := k.key(t, `{"name":"writer"}`)
	c := k.sdk(token)

	whole, err := c.Completions.New(t.Context(), openai.CompletionNewParams{
		Model: "demo", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Tell")},
	})
	if err != nil {
		t.Fatal(err)
	}

	s := c.Completions.NewStreaming(t.Context(), openai.CompletionNewParams{
		Model:         "demo",
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("Tell")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var (
		text   strings.Builder
		finish string
		usage  openai.CompletionUsage
		chunks int
	)
	for s.Next() {
		ch := s.Current()
		chunks++
		for _, c := range ch.Choices {
			text.WriteString(c.Text)
			if c.FinishReason != "" {
				finish = string(c.FinishReason)
			}
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "Once upon a time" || text.String() != whole.Choices[0].Text {
		t.Errorf("streamed %q, whole %q", text.String(), whole.Choices[0].Text)
	}
	if finish != "stop" || string(whole.Choices[0].FinishReason) != "stop" {
		t.Errorf("finish reasons: streamed %q, whole %q", finish, whole.Choices[0].FinishReason)
	}
	if usage.PromptTokens != 2 || usage.CompletionTokens != 4 || whole.Usage.CompletionTokens != 4 {
		t.Errorf("usage: streamed %+v, whole %+v", usage, whole.Usage)
	}
	if chunks != 4+2 { // four pieces, the finish chunk, the usage chunk
		t.Errorf("%d chunks, want 6", chunks)
	}
}

func TestCompletionCharCap(t *testing.T) {
	k := newKeyed(t, &fakeBackend{generate: scriptedGenerate("abcdef", "ghijkl", "mnopqr")}, Config{})
	_, token := k.key(t, `{"name":"short","limits":{"max_output_chars":8}}`)
	c := k.sdk(token)
	params := openai.CompletionNewParams{Model: "demo", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}}

	whole, err := c.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if whole.Choices[0].Text != "abcdefgh" || whole.Choices[0].FinishReason != "length" {
		t.Errorf("whole: %q %q", whole.Choices[0].Text, whole.Choices[0].FinishReason)
	}
	s := c.Completions.NewStreaming(t.Context(), params)
	var text, finish string
	for s.Next() {
		for _, ch := range s.Current().Choices {
			text += ch.Text
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text != "abcdefgh" || finish != "length" {
		t.Errorf("streamed: %q %q", text, finish)
	}
}
