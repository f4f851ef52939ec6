package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/runtime/ollama"
)

// fakeCatalog is a ModelCatalog whose calls are function fields.
type fakeCatalog struct {
	resolve func(ctx context.Context, name string) (models.Info, error)
	all     func(ctx context.Context) ([]models.Info, error)
	width   func(ctx context.Context, name string) (int, error)
}

func (f *fakeCatalog) Resolve(ctx context.Context, name string) (models.Info, error) {
	return f.resolve(ctx, name)
}
func (f *fakeCatalog) All(ctx context.Context) ([]models.Info, error) { return f.all(ctx) }
func (f *fakeCatalog) EmbeddingWidth(ctx context.Context, name string) (int, error) {
	return f.width(ctx, name)
}

func getKey(t *testing.T, url, key string) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodGet, url, "", "", key)
}

// TestConfigModels: with Config.Models set, models are resolved, listed and
// measured through it, not through the backend's own list.
func TestConfigModels(t *testing.T) {
	other := models.Info{Name: "other:7b", Digest: "sha256:o1", Modified: time.Unix(1700000000, 0)}
	cat := &fakeCatalog{
		resolve: func(_ context.Context, name string) (models.Info, error) {
			switch name {
			case "other:7b":
				return other, nil
			case "down":
				return models.Info{}, fmt.Errorf("list models: %w", ollama.ErrUnavailable)
			}
			return models.Info{}, fmt.Errorf("%w: %q", models.ErrNotFound, name)
		},
		all:   func(context.Context) ([]models.Info, error) { return []models.Info{other}, nil },
		width: func(context.Context, string) (int, error) { return 8, nil },
	}
	var embedded []string
	b := &fakeBackend{ // lists only demo:latest
		chat: scripted("hi"),
		embed: func(_ context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
			embedded = append(embedded, req.Model)
			return &api.EmbedResponse{Model: req.Model, Embeddings: [][]float32{make([]float32, req.Dimensions)}}, nil
		},
	}
	ts := newTestServer(t, b, Config{Models: cat})

	resp, body := getKey(t, ts.URL+"/v1/models", "good")
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":"other:7b"`) || strings.Contains(body, "demo") {
		t.Errorf("GET /v1/models = %d %s; want other:7b only", resp.StatusCode, body)
	}
	resp, body = getKey(t, ts.URL+"/v1/models/other:7b", "good")
	if resp.StatusCode != 200 || !strings.Contains(body, `"created":1700000000`) {
		t.Errorf("GET /v1/models/other:7b = %d %s", resp.StatusCode, body)
	}
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, tt := range []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"found", "/v1/chat/completions", `{"model":"other:7b",` + msgs + `}`, 200, `"model":"other:7b"`},
		{"not in the catalog", "/v1/chat/completions", `{"model":"demo",` + msgs + `}`, 404, "model_not_found"},
		{"catalog cannot list", "/v1/chat/completions", `{"model":"down",` + msgs + `}`, 503, "backend_unavailable"},
		{"dimensions above the catalog's width", "/v1/embeddings", `{"model":"other:7b","input":"x","dimensions":9}`, 400, "width of 8"},
		{"dimensions within it", "/v1/embeddings", `{"model":"other:7b","input":"x","dimensions":8}`, 200, `"object":"list"`},
	} {
		resp, body := post(t, ts, tt.path, "application/json", tt.body)
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s; want %d containing %q", tt.name, resp.StatusCode, body, tt.status, tt.want)
		}
	}
	if len(embedded) != 1 || embedded[0] != "other:7b" {
		t.Errorf("backend embedded with %v, want [other:7b]", embedded)
	}
}
