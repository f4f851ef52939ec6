package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/safety/keys"
)

// TestModelGuardServing: a model outside the allowlist answers 404 as if
// absent and is not listed; a pinned model with another digest answers
// 503 model_digest_mismatch.
func TestModelGuardServing(t *testing.T) {
	allow, err := models.ParseAllowlist([]string{"demo", "pinned"})
	if err != nil {
		t.Fatal(err)
	}
	// fakeBackend lists every model with digest "abc".
	g := &models.Guard{Allow: allow, Pins: map[string]string{
		"registry.ollama.ai/library/pinned:latest": strings.Repeat("f", 64),
	}}
	b := &fakeBackend{models: []string{"demo:latest", "secret:latest", "pinned:latest"}, chat: scripted("hi")}
	ts := newTestServer(t, b, Config{ModelGuard: g})

	chat := func(model string) (int, string) {
		resp, body := post(t, ts, "/v1/chat/completions", "application/json", `{"model":"`+model+`","messages":[{"role":"user","content":"x"}]}`)
		return resp.StatusCode, body
	}
	if st, body := chat("demo"); st != http.StatusOK {
		t.Fatalf("allowed model: %d %s", st, body)
	}
	st, body := chat("secret")
	if st != http.StatusNotFound || !strings.Contains(body, "model_not_found") {
		t.Fatalf("model outside the allowlist: %d %s, want 404 model_not_found", st, body)
	}
	st, body = chat("pinned")
	if st != http.StatusServiceUnavailable || !strings.Contains(body, "model_digest_mismatch") {
		t.Fatalf("pin mismatch: %d %s, want 503 model_digest_mismatch", st, body)
	}
	resp, body := send(t, http.MethodGet, ts.URL+"/v1/models", "", "", "good")
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "secret") || !strings.Contains(body, "demo") {
		t.Fatalf("/v1/models = %d %s, want demo without secret", resp.StatusCode, body)
	}
	if n := g.Mismatches()["registry.ollama.ai/library/pinned:latest"]; n != 1 {
		t.Errorf("mismatches = %d, want 1", n)
	}
}

// fakeModelAdmin scripts the governor's answers.
type fakeModelAdmin struct {
	models.Governor // unused methods panic on a nil backend: tests call only the scripted ones
	pull            func(ctx context.Context, name string, fn models.ProgressFunc) (models.Change, error)
	pins            []string
}

func (f *fakeModelAdmin) Pull(ctx context.Context, _, name string, _ bool, fn models.ProgressFunc) (models.Change, error) {
	return f.pull(ctx, name, fn)
}

func (f *fakeModelAdmin) Pin(_ context.Context, actor, name, digest string) (string, error) {
	if name == "unknown" {
		return "", fmt.Errorf("%w: %s", models.ErrNotFound, name)
	}
	if digest == "0000" {
		return "", fmt.Errorf("%w: never had %s", models.ErrNoVersion, digest)
	}
	f.pins = append(f.pins, actor+" "+name)
	return "d1", nil
}

func (f *fakeModelAdmin) List(context.Context) ([]models.Listed, error) {
	return []models.Listed{{Name: "demo:latest", Allowed: true}}, nil
}

func TestAdminModels(t *testing.T) {
	fa := &fakeModelAdmin{pull: func(ctx context.Context, name string, fn models.ProgressFunc) (models.Change, error) {
		switch name {
		case "refused":
			return models.Change{}, fmt.Errorf("%w: refused", models.ErrNotAllowed)
		case "bad name":
			return models.Change{}, fmt.Errorf("%w: %q", models.ErrBadName, name)
		case "down":
			if err := fn(models.Progress{Status: "pulling manifest"}); err != nil {
				return models.Change{}, err
			}
			return models.Change{}, errors.New("pull down: registry unreachable")
		}
		for i := range 3 {
			if err := fn(models.Progress{Status: "pulling abc", Digest: "sha256:abc", Total: 3, Completed: int64(i + 1)}); err != nil {
				return models.Change{}, err
			}
		}
		return models.Change{Name: name, New: "d2", Changed: true}, nil
	}}
	k := newKeyed(t, &fakeBackend{}, Config{ModelAdmin: fa})

	resp, body := k.do(t, http.MethodPost, "/admin/models/pull", k.admin, `{"name":"m"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("pull: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 || lines[2]["completed"] != float64(3) || lines[3]["status"] != "success" || lines[3]["new_digest"] != "d2" {
		t.Fatalf("pull lines = %v", lines)
	}

	_, body = k.do(t, http.MethodPost, "/admin/models/pull", k.admin, `{"name":"down"}`)
	if !strings.Contains(body, `"status":"error"`) || !strings.Contains(body, "registry unreachable") {
		t.Fatalf("a failed pull after progress ends with %q", body)
	}
	for _, c := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/admin/models/pull", `{"name":"refused"}`, http.StatusForbidden, "model_not_allowed"},
		{"/admin/models/pull", `{"name":"bad name"}`, http.StatusBadRequest, "invalid_value"},
		{"/admin/models/pull", `{}`, http.StatusBadRequest, "invalid_value"},
		{"/admin/models/pull", `not json`, http.StatusBadRequest, ""},
		{"/admin/models/pin", `{"name":"unknown"}`, http.StatusNotFound, "model_not_found"},
		{"/admin/models/pin", `{"name":"m","digest":"0000"}`, http.StatusNotFound, "version_not_found"},
	} {
		resp, body := k.do(t, http.MethodPost, c.path, k.admin, c.body)
		if resp.StatusCode != c.status || !strings.Contains(body, c.code) {
			t.Errorf("%s %s = %d %s, want %d %s", c.path, c.body, resp.StatusCode, body, c.status, c.code)
		}
	}
	resp, body = k.do(t, http.MethodPost, "/admin/models/pin", k.admin, `{"name":"m"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"digest":"d1"`) || len(fa.pins) != 1 || !strings.HasPrefix(fa.pins[0], "key:") {
		t.Fatalf("pin = %d %s, recorded %v", resp.StatusCode, body, fa.pins)
	}
	resp, body = k.do(t, http.MethodGet, "/admin/models", k.admin, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"allowed":true`) {
		t.Fatalf("list = %d %s", resp.StatusCode, body)
	}
	// Not for keys without the admin scope.
	_, user, err := k.m.Create(t.Context(), "test", keys.Spec{Name: "user", Scopes: keys.DefaultScopes()})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cache.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := k.do(t, http.MethodGet, "/admin/models", user, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a user key listed models: %d", resp.StatusCode)
	}
}
