package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/probe"
)

type fakeProbeRuns func(ctx context.Context, limit int) ([]probe.RunInfo, error)

func (f fakeProbeRuns) List(ctx context.Context, limit int) ([]probe.RunInfo, error) {
	return f(ctx, limit)
}

// GET /admin/probes lists the runs with the limit asked for; a bad limit
// is a 400 in the API's shape.
func TestAdminProbes(t *testing.T) {
	var gotLimit int
	runs := fakeProbeRuns(func(_ context.Context, limit int) ([]probe.RunInfo, error) {
		gotLimit = limit
		r := probe.RunInfo{Count: 3, Passed: 2, Failed: 1}
		r.ID, r.Model, r.Suite = 7, "warden-demo:latest", "builtin:all"
		return []probe.RunInfo{r}, nil
	})
	k := newKeyed(t, &fakeBackend{}, Config{Probes: runs})
	resp, body := k.do(t, http.MethodGet, "/admin/probes?limit=5", k.admin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var got struct {
		Data []struct {
			ID     int64  `json:"id"`
			Model  string `json:"model"`
			Probes int    `json:"probes"`
			Failed int    `json:"failed"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if gotLimit != 5 || len(got.Data) != 1 || got.Data[0].ID != 7 || got.Data[0].Probes != 3 || got.Data[0].Failed != 1 {
		t.Errorf("limit %d, body %s", gotLimit, body)
	}
	for _, bad := range []string{"0", "x", "100000"} {
		if resp, body := k.do(t, http.MethodGet, "/admin/probes?limit="+bad, k.admin, ""); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("limit=%s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
	if resp, _ := k.do(t, http.MethodGet, "/admin/probes", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a key: %d, want 401", resp.StatusCode)
	}
}

// Both records of a probe key's request say it is a probe; another key's
// do not.
func TestProbeKeyRecordsMarked(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{Audit: aud})
	_, probeTok, err := k.m.Create(t.Context(), "os:test", keys.Spec{Name: "probe", Probe: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cache.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
	for _, tok := range []string{probeTok, k.admin} {
		if resp, out := k.do(t, http.MethodPost, "/v1/chat/completions", tok, body); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, out)
		}
	}
	aud.mu.Lock()
	defer aud.mu.Unlock()
	if len(aud.recs) != 4 {
		t.Fatalf("%d records, want 4", len(aud.recs))
	}
	for i, r := range aud.recs {
		want := ""
		if i < 2 {
			want = `{"probe":true}`
		}
		if string(r.Detail) != want {
			t.Errorf("record %d (%s): detail %q, want %q", i, r.Kind, r.Detail, want)
		}
	}
}
