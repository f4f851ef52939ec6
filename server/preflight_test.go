package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/preflight"
)

// GET /admin/preflight serves the latest report to admin keys only, and
// 503 before the first run.
func TestAdminPreflight(t *testing.T) {
	var rep preflight.Report
	ran := false
	k := newKeyed(t, &fakeBackend{}, Config{Preflight: func() (preflight.Report, bool) { return rep, ran }})
	if resp, body := k.do(t, http.MethodGet, "/admin/preflight", k.admin, ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("before a run: %d %s, want 503", resp.StatusCode, body)
	}
	rep = preflight.Report{OK: false, At: time.Unix(0, 0).UTC(), Checks: []preflight.Result{{Name: "logs.sinks", Status: preflight.Fail, Reason: "no sink", Fix: "add one"}}}
	ran = true
	resp, body := k.do(t, http.MethodGet, "/admin/preflight", k.admin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var got preflight.Report
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.OK || len(got.Checks) != 1 || got.Checks[0].Name != "logs.sinks" || got.Checks[0].Status != preflight.Fail {
		t.Errorf("got %+v", got)
	}
	_, tok, err := k.m.Create(t.Context(), "os:test", keys.Spec{Name: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cache.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := k.do(t, http.MethodGet, "/admin/preflight", tok, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a key without admin scope got %d, want 403", resp.StatusCode)
	}
}
