package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/keys"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// fakeBackend is a Backend whose calls are scripted by function fields.
// It stands in for Ollama only in these unit tests; the e2e tests in
// cmd/warden run the real one.
type fakeBackend struct {
	chat     func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error
	generate func(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error
	embed    func(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error)
	models   []string
}

func (f *fakeBackend) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return f.chat(ctx, req, fn)
}

func (f *fakeBackend) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	return f.generate(ctx, req, fn)
}

func (f *fakeBackend) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	return f.embed(ctx, req)
}

func (f *fakeBackend) List(context.Context) (*api.ListResponse, error) {
	var out api.ListResponse
	for _, m := range f.models {
		out.Models = append(out.Models, api.ListModelResponse{Name: m, Model: m, Digest: "sha256:abc"})
	}
	return &out, nil
}

func (f *fakeBackend) Show(context.Context, *api.ShowRequest) (*api.ShowResponse, error) {
	return &api.ShowResponse{ModelInfo: map[string]any{"general.architecture": "llama", "llama.embedding_length": float64(64)}}, nil
}

// scripted answers a chat with the given content pieces, then done.
func scripted(pieces ...string) func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
	return func(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for _, p := range pieces {
			if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: p}}); err != nil {
				return err
			}
		}
		return fn(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: len(pieces)}})
	}
}

// fakeKeys accepts the token "good" with every scope but admin; the real
// key cache is tested in safety/keys and end to end in cmd/warden.
type fakeKeys struct{}

func (fakeKeys) Authenticate(token string) (*keys.Principal, error) {
	if token != "good" {
		return nil, keys.ErrInvalidKey
	}
	return &keys.Principal{KeyID: "k1", Scopes: keys.DefaultScopes()}, nil
}

func newTestServer(t *testing.T, b *fakeBackend, cfg Config) *httptest.Server {
	t.Helper()
	if b.models == nil {
		b.models = []string{"demo:latest"}
	}
	if cfg.Keys == nil {
		cfg.Keys = fakeKeys{}
	}
	s, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func post(t *testing.T, ts *httptest.Server, path, ctype, body string) (*http.Response, string) {
	t.Helper()
	return postKey(t, ts, path, ctype, body, "good")
}

func postKey(t *testing.T, ts *httptest.Server, path, ctype, body, key string) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodPost, ts.URL+path, ctype, body, key)
}

// send makes one request and returns its response with the body read.
func send(t *testing.T, method, url, ctype, body, key string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestBadInput(t *testing.T) {
	b := &fakeBackend{chat: scripted("ok"), generate: func(context.Context, *api.GenerateRequest, func(api.GenerateResponse) error) error {
		return errors.New("not reached")
	}}
	ts := newTestServer(t, b, Config{MaxBodyBytes: 4096, DefaultLimits: keys.Limits{MaxInputTokens: 500}})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		want   string // substring of the body
	}{
		{"malformed", "/v1/chat/completions", `{"model":"demo",`, 400, "Malformed JSON"},
		{"not an object", "/v1/chat/completions", `[1,2]`, 400, "expected a JSON object"},
		{"trailing data", "/v1/chat/completions", `{"model":"demo",` + msgs + `} {}`, 400, "after the top-level value"},
		{"empty body", "/v1/chat/completions", ``, 400, "empty"},
		{"invalid utf-8", "/v1/chat/completions", "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, "UTF-8"},
		{"too large", "/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"` + strings.Repeat("a", 5000) + `"}]}`, 413, "request_too_large"},
		{"missing model", "/v1/chat/completions", `{` + msgs + `}`, 400, `"param":"model"`},
		{"missing messages", "/v1/chat/completions", `{"model":"demo"}`, 400, `"param":"messages"`},
		{"empty messages", "/v1/chat/completions", `{"model":"demo","messages":[]}`, 400, `"param":"messages"`},
		{"unknown role", "/v1/chat/completions", `{"model":"demo","messages":[{"role":"wizard","content":"hi"}]}`, 400, `"param":"messages[0].role"`},
		{"content wrong type", "/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":5}]}`, 400, `messages[0].content`},
		{"bad content part", "/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":[{"type":"audio"}]}]}`, 400, `messages[0].content[0].type`},
		{"temperature high", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"temperature":2.5}`, 400, `"param":"temperature"`},
		{"temperature wrong type", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"temperature":"hot"}`, 400, `"param":"temperature"`},
		{"top_p", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"top_p":-0.1}`, 400, `"param":"top_p"`},
		{"max_tokens zero", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"max_tokens":0}`, 400, `"param":"max_tokens"`},
		{"max_completion_tokens negative", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"max_completion_tokens":-1}`, 400, `"param":"max_completion_tokens"`},
		{"n", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"n":3}`, 400, `"param":"n"`},
		{"stop wrong type", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"stop":[1]}`, 400, `"param":"stop"`},
		{"response_format", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"response_format":{"type":"xml"}}`, 400, `"param":"response_format.type"`},
		{"json_schema without schema", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"response_format":{"type":"json_schema"}}`, 400, `json_schema.schema`},
		{"tool_choice unknown function", "/v1/chat/completions", `{"model":"demo",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, 400, `"param":"tool_choice"`},
		{"unknown model", "/v1/chat/completions", `{"model":"nope",` + msgs + `}`, 404, "model_not_found"},
		{"invalid model name", "/v1/chat/completions", `{"model":"a/b/c/d/e",` + msgs + `}`, 404, "model_not_found"},
		{"completion missing prompt", "/v1/completions", `{"model":"demo"}`, 400, `"param":"prompt"`},
		{"completion token prompt", "/v1/completions", `{"model":"demo","prompt":[[1,2]]}`, 400, `"param":"prompt"`},
		{"completion echo", "/v1/completions", `{"model":"demo","prompt":"x","echo":true}`, 400, `"param":"echo"`},
		{"embedding missing input", "/v1/embeddings", `{"model":"demo"}`, 400, `"param":"input"`},
		{"embedding tokens", "/v1/embeddings", `{"model":"demo","input":[1,2]}`, 400, `"param":"input"`},
		{"embedding format", "/v1/embeddings", `{"model":"demo","input":"x","encoding_format":"hex"}`, 400, `"param":"encoding_format"`},
		{"embedding dimensions above width", "/v1/embeddings", `{"model":"demo","input":"x","dimensions":65}`, 400, `"param":"dimensions"`},
		{"ollama api hidden", "/api/chat", `{}`, 404, "unknown_url"},
		{"max_input_tokens", "/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"` + strings.Repeat("b", 600) + `"}]}`, 400, "context_length_exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, ts, tt.path, "application/json", tt.body)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %s; want %d containing %q", resp.StatusCode, body, tt.status, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q, want JSON", ct)
			}
			if !strings.Contains(body, `"error":{"message":`) {
				t.Errorf("body %s is not an OpenAI-shaped error", body)
			}
		})
	}
}

func TestAnyContentTypeAccepted(t *testing.T) {
	ts := newTestServer(t, &fakeBackend{chat: scripted("hi")}, Config{})
	for _, ct := range []string{"application/json", "application/x-www-form-urlencoded", "text/plain", ""} {
		resp, body := post(t, ts, "/v1/chat/completions", ct, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"content":"hi"`) {
			t.Errorf("content type %q: %d %s", ct, resp.StatusCode, body)
		}
	}
}

func TestDefaultOutputCapAndTruncateOff(t *testing.T) {
	var got *api.ChatRequest
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		got = req
		return scripted("x")(ctx, req, fn)
	}}
	ts := newTestServer(t, b, Config{MaxOutputTokens: 77})
	post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
	if got == nil || got.Options["num_predict"] != 77 {
		t.Fatalf("num_predict = %v, want the server default 77", got.Options["num_predict"])
	}
	if got.Truncate == nil || *got.Truncate {
		t.Errorf("truncate = %v, want false", got.Truncate)
	}
	post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`)
	if got.Options["num_predict"] != 5 {
		t.Errorf("num_predict = %v, want the request's 5", got.Options["num_predict"])
	}
}

func TestBackendErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"unavailable", ollama.ErrUnavailable, 503, "backend_unavailable"},
		{"context", api.StatusError{StatusCode: 400, ErrorMessage: "the input length exceeds the context length"}, 400, "context_length_exceeded"},
		{"not found", api.StatusError{StatusCode: 404, ErrorMessage: `model "x" not found`}, 404, "model_not_found"},
		{"internal detail hidden", api.StatusError{StatusCode: 500, ErrorMessage: "/secret/path exploded"}, 500, ""},
		{"deadline", context.DeadlineExceeded, 504, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{chat: func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error { return tt.err }}
			ts := newTestServer(t, b, Config{})
			resp, body := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.code) {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if strings.Contains(body, "/secret/path") {
				t.Errorf("internal error detail leaked: %s", body)
			}
			if tt.status == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// TestStreamErrorAfterStart: once the stream has begun, an error is an event
// and no [DONE] follows.
func TestStreamErrorAfterStart(t *testing.T) {
	b := &fakeBackend{chat: func(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Message: api.Message{Content: "partial"}}); err != nil {
			return err
		}
		return ollama.ErrUnavailable
	}}
	ts := newTestServer(t, b, Config{})
	resp, body := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !strings.Contains(body, `"content":"partial"`) || !strings.Contains(body, `data: {"error":{`) || !strings.Contains(body, "backend_unavailable") {
		t.Errorf("body lacks the partial content and the error event:\n%s", body)
	}
	if strings.Contains(body, "[DONE]") {
		t.Errorf("stream with an error ended with [DONE]:\n%s", body)
	}
}

// TestKeepAliveWhileWaiting: while the backend has not answered, the stream
// sends comment lines. The backend is released only after the test has seen
// one, so nothing here depends on timing.
func TestKeepAliveWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return scripted("late")(ctx, req, fn)
	}}
	ts := newTestServer(t, b, Config{KeepAliveInterval: time.Millisecond})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer good")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != ": keep-alive\n" {
		t.Fatalf("first line %q (%v), want a keep-alive comment", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), `"content":"late"`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest of stream:\n%s", rest)
	}
}

// TestClientDisconnectCancelsBackend: the backend's context ends when the
// client goes away.
func TestClientDisconnectCancelsBackend(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	var once sync.Once
	b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}}
	ts := newTestServer(t, b, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(`{"model":"demo","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer good")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel()
	select {
	case <-cancelled:
	case <-time.After(time.Minute):
		t.Fatal("backend context not cancelled a minute after the client left")
	}
	<-errc
}

func TestHealthAndReady(t *testing.T) {
	down := errors.New("restarting")
	var ready error
	s, err := New(&fakeBackend{models: []string{"demo"}}, Config{Keys: fakeKeys{}, Ready: func() error { return ready }})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, tt := range []struct {
		path  string
		ready error
		want  int
	}{{"/healthz", down, 200}, {"/readyz", nil, 200}, {"/readyz", down, 503}} {
		ready = tt.ready
		resp, err := http.Get(ts.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s with ready=%v: %d, want %d", tt.path, tt.ready, resp.StatusCode, tt.want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	if _, err := New(&fakeBackend{}, Config{Keys: fakeKeys{}, TrustedProxies: []string{"not-an-ip"}}); err == nil {
		t.Error("a bad trusted proxy was accepted")
	}
	if _, err := New(&fakeBackend{}, Config{}); err == nil {
		t.Error("a server without a key authenticator was built")
	}
}

func TestAuthOutcomes(t *testing.T) {
	ts := newTestServer(t, &fakeBackend{chat: scripted("hi")}, Config{})
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`
	for _, tt := range []struct {
		name   string
		header string
		value  string
		want   int
	}{
		{"bearer", "Authorization", "Bearer good", 200},
		{"bearer any case", "Authorization", "bearer good", 200},
		{"x-api-key", "X-Api-Key", "good", 200},
		{"missing", "", "", 401},
		{"wrong", "Authorization", "Bearer bad", 401},
		{"basic scheme", "Authorization", "Basic good", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
			if tt.header != "" {
				req.Header.Set(tt.header, tt.value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, tt.want)
			}
			if tt.want == 401 && !strings.Contains(string(b), `"code":"invalid_api_key"`) {
				t.Errorf("401 body %s lacks invalid_api_key", b)
			}
		})
	}
	// Health stays open.
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz without a key: %v %v", resp, err)
	}
}

func TestCharCapEndsStream(t *testing.T) {
	var cancelled bool
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for _, p := range []string{"abc", "déf", "ghi", "jkl"} {
			if err := fn(api.ChatResponse{Message: api.Message{Content: p}}); err != nil {
				cancelled = true
				return err
			}
		}
		return fn(api.ChatResponse{Done: true, DoneReason: "stop"})
	}}
	ts := newTestServer(t, b, Config{DefaultLimits: keys.Limits{MaxOutputChars: 5}})
	_, body := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(body, `"content":"abcdé"`) || !strings.Contains(body, `"finish_reason":"length"`) || !cancelled {
		t.Errorf("plain: %s (backend cancelled: %v), want 5 characters and length", body, cancelled)
	}
	cancelled = false
	_, body = post(t, ts, "/v1/chat/completions", "", `{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(body, `"content":"dé"`) || strings.Contains(body, "ghi") || !strings.Contains(body, `"finish_reason":"length"`) || !cancelled {
		t.Errorf("stream: %s (backend cancelled: %v)", body, cancelled)
	}
}
