package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
)

func TestE2EChatStreamEqualsNonStream(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)
	params := chatParams("Tell me a story.", 40)

	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("choices = %d, want 1", len(resp.Choices))
	}
	want := resp.Choices[0].Message.Content
	if want == "" || !utf8.ValidString(want) {
		t.Fatalf("content = %q, want non-empty UTF-8", want)
	}
	if resp.Usage.CompletionTokens < 1 || resp.Usage.CompletionTokens > 40 {
		t.Errorf("completion tokens = %d, want 1..40", resp.Usage.CompletionTokens)
	}
	if resp.Usage.PromptTokens < 1 {
		t.Errorf("prompt tokens = %d, want > 0", resp.Usage.PromptTokens)
	}

	params.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var (
		got     strings.Builder
		roles   int
		finish  string
		usage   *openai.CompletionUsage
		nchunks int
	)
	for stream.Next() {
		ch := stream.Current()
		nchunks++
		if ch.Usage.TotalTokens > 0 {
			u := ch.Usage
			usage = &u
		}
		for _, choice := range ch.Choices {
			if choice.Delta.Role != "" {
				roles++
			}
			got.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got.String() != want {
		t.Errorf("streamed text differs from the non-streamed one:\nstream: %q\nplain:  %q", got.String(), want)
	}
	if roles != 1 {
		t.Errorf("role sent in %d deltas, want exactly the first", roles)
	}
	if finish != string(resp.Choices[0].FinishReason) {
		t.Errorf("stream finish_reason = %q, non-stream %q", finish, resp.Choices[0].FinishReason)
	}
	if usage == nil || usage.CompletionTokens != resp.Usage.CompletionTokens {
		t.Errorf("usage chunk = %+v, want completion tokens %d", usage, resp.Usage.CompletionTokens)
	}
}

func TestE2EChatContentParts(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)

	plain, err := c.Chat.Completions.New(ctx, chatParams("Hello there", 24))
	if err != nil {
		t.Fatal(err)
	}
	params := chatParams("", 24)
	params.Messages = []openai.ChatCompletionMessageParamUnion{
		openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("Hello there")}),
	}
	parts, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if parts.Choices[0].Message.Content != plain.Choices[0].Message.Content {
		t.Errorf("a one-part array answered %q, the same text as a string %q", parts.Choices[0].Message.Content, plain.Choices[0].Message.Content)
	}
}

func TestE2EMaxTokensCapsOutput(t *testing.T) {
	w := sharedWarden(t)
	resp, err := w.client().Chat.Completions.New(ctxT(t), chatParams("Go on and on.", 7))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens > 7 {
		t.Errorf("completion tokens = %d, want ≤ 7", resp.Usage.CompletionTokens)
	}
	if resp.Usage.CompletionTokens == 7 && resp.Choices[0].FinishReason != "length" {
		t.Errorf("finish_reason = %q at the cap, want length", resp.Choices[0].FinishReason)
	}
}

func TestE2ECompletions(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)
	params := openai.CompletionNewParams{
		Model:       "warden-demo",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens:   openai.Int(30),
		Temperature: openai.Float(0),
		Seed:        openai.Int(1),
	}
	resp, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	want := resp.Choices[0].Text
	if want == "" {
		t.Fatal("empty completion")
	}
	stream := c.Completions.NewStreaming(ctx, params)
	var got strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			got.WriteString(ch.Text)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got.String() != want {
		t.Errorf("streamed completion %q, non-streamed %q", got.String(), want)
	}
}

func TestE2EEmbeddings(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	resp, err := w.client().Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "warden-demo",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first", "second"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 {
		t.Fatalf("embeddings = %d, want 2", len(resp.Data))
	}
	for i, d := range resp.Data {
		if len(d.Embedding) != 64 {
			t.Errorf("embedding %d has %d dimensions, want the model's width 64", i, len(d.Embedding))
		}
		if d.Index != int64(i) {
			t.Errorf("embedding %d has index %d", i, d.Index)
		}
	}

	// base64, read raw: the bytes must decode to the same floats.
	status, _, body := w.post(t, "/v1/embeddings", "application/json",
		`{"model":"warden-demo","input":["first","second"],"encoding_format":"base64"}`)
	if status != http.StatusOK {
		t.Fatalf("base64 embeddings: status %d: %s", status, body)
	}
	var b64 struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &b64); err != nil {
		t.Fatal(err)
	}
	for i, d := range b64.Data {
		raw, err := base64.StdEncoding.DecodeString(d.Embedding)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 4*64 {
			t.Fatalf("base64 embedding %d: %d bytes, want %d", i, len(raw), 4*64)
		}
		for j := range 64 {
			f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			if f != float32(resp.Data[i].Embedding[j]) {
				t.Fatalf("embedding %d[%d]: base64 %v, float %v", i, j, f, resp.Data[i].Embedding[j])
			}
		}
	}

	status, _, body = w.post(t, "/v1/embeddings", "application/json", `{"model":"warden-demo","input":"x","dimensions":65}`)
	if status != http.StatusBadRequest || !strings.Contains(string(body), `"param":"dimensions"`) {
		t.Errorf("dimensions above the width: status %d %s, want 400 naming dimensions", status, body)
	}
}

func TestE2EModels(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range page.Data {
		found = found || m.ID == "warden-demo:latest"
	}
	if !found {
		t.Fatalf("models = %+v, want warden-demo:latest", page.Data)
	}
	for _, id := range []string{"warden-demo", "warden-demo:latest", "registry.ollama.ai/library/warden-demo:latest"} {
		m, err := c.Models.Get(ctx, id)
		if err != nil {
			t.Errorf("get %s: %v", id, err)
			continue
		}
		if m.ID != "warden-demo:latest" {
			t.Errorf("get %s: id %q", id, m.ID)
		}
	}
	_, err = c.Models.Get(ctx, "no-such-model")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("unknown model: %v, want 404", err)
	}
}

func TestE2EBadInput(t *testing.T) {
	w := sharedWarden(t)
	long := strings.Repeat("a", 5000) // byte tokens: over the 4096 context
	tests := []struct {
		name        string
		path, ctype string
		body        string
		status      int
		want        string
	}{
		{"malformed JSON", "/v1/chat/completions", "application/json", `{"model":`, 400, "invalid_request_error"},
		{"form content type is fine", "/v1/chat/completions", "application/x-www-form-urlencoded",
			`{"model":"warden-demo","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`, 200, "chat.completion"},
		{"unknown model", "/v1/chat/completions", "application/json",
			`{"model":"nope","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`, 404, "model_not_found"},
		{"prompt over the context", "/v1/chat/completions", "application/json",
			`{"model":"warden-demo","messages":[{"role":"user","content":"` + long + `"}],"max_tokens":2}`, 400, "context_length_exceeded"},
		{"completion over the context", "/v1/completions", "application/json",
			`{"model":"warden-demo","prompt":"` + long + `","max_tokens":2}`, 400, "context_length_exceeded"},
		{"embedding over the context", "/v1/embeddings", "application/json",
			`{"model":"warden-demo","input":"` + long + `"}`, 400, "context_length_exceeded"},
		{"n > 1", "/v1/chat/completions", "application/json",
			`{"model":"warden-demo","messages":[{"role":"user","content":"hi"}],"n":2}`, 400, `"param":"n"`},
		{"ollama's own api is not exposed", "/api/generate", "application/json", `{"model":"warden-demo","prompt":"hi"}`, 404, "unknown_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := w.post(t, tt.path, tt.ctype, tt.body)
			if status != tt.status || !strings.Contains(string(body), tt.want) {
				t.Errorf("status %d body %s; want %d containing %s", status, body, tt.status, tt.want)
			}
		})
	}
}

// TestE2EModelsListCommand runs `warden models list` against the running
// server's data dir, as an admin would.
func TestE2EModelsListCommand(t *testing.T) {
	w := sharedWarden(t)
	out, err := exec.Command(buildWarden(t), "models", "list", "--json", "--data-dir", w.dataDir).Output()
	if err != nil {
		t.Fatalf("models list: %v", err)
	}
	var rows []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("models list --json printed %s: %v", out, err)
	}
	if len(rows) != 1 || rows[0].Name != "warden-demo:latest" || rows[0].Digest == "" {
		t.Errorf("models list = %+v, want warden-demo:latest with a digest", rows)
	}
	table, err := exec.Command(buildWarden(t), "models", "list", "--data-dir", w.dataDir).Output()
	if err != nil || !strings.Contains(string(table), "warden-demo:latest") {
		t.Errorf("models list table: %v\n%s", err, table)
	}

	_, err = exec.Command(buildWarden(t), "models", "list", "--data-dir", t.TempDir()).Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(string(exitErr.Stderr), "warden serve") {
		t.Errorf("models list without a server: %v, want an error pointing at warden serve", err)
	}
}
