package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/preflight"
)

// TestE2EPreflightAdmin: a running server serves its latest preflight
// report on /admin/preflight, rerun once the real child is up (the backend
// check names the child's actual isolation), and exports the gauge.
func TestE2EPreflightAdmin(t *testing.T) {
	w := sharedWarden(t)
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, w.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+w.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("/admin/preflight")
	if code != http.StatusOK {
		t.Fatalf("/admin/preflight: %d %s", code, body)
	}
	var rep preflight.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("parse: %v in %s", err, body)
	}
	if len(rep.Checks) != len(preflight.Checks()) {
		t.Fatalf("%d checks, want %d", len(rep.Checks), len(preflight.Checks()))
	}
	for _, c := range rep.Checks {
		if c.Name == "exposure.backend" && !strings.Contains(c.Reason, "user") {
			// The running child's description ("loopback, same user as
			// warden" or "netns, user ollama (uid ...)") replaced the
			// prediction made before it started.
			t.Errorf("exposure.backend %q does not describe the running child", c.Reason)
		}
	}
	code, body = get("/metrics")
	if code != http.StatusOK || !strings.Contains(string(body), `warden_preflight_check{check="logs.fail_open",status="pass"} 1`) {
		t.Errorf("/metrics (%d) lacks the preflight gauge", code)
	}
}
