package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// models.guard lists the real backend's models: a guard model it lacks
// fails the check, in serve's report (/admin/preflight) and in `warden
// preflight`; the demo model, which it has, passes.
func TestE2EPreflightGuardModel(t *testing.T) {
	w := startWarden(t, "", "[safety.guard]\nmodel = \"llama-guard3:1b\"\nfailure = \"open\"\n")
	defer w.stop()
	status := func(checks []preflight.Result) preflight.Result {
		for _, c := range checks {
			if c.Name == "models.guard" {
				return c
			}
		}
		t.Fatal("no models.guard check")
		return preflight.Result{}
	}
	req, _ := http.NewRequest(http.MethodGet, w.base+"/admin/preflight", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := w.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var rep preflight.Report
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/admin/preflight: %d %v %s", resp.StatusCode, err, body)
	}
	if c := status(rep.Checks); c.Status != preflight.Fail || !strings.Contains(c.Reason, `"llama-guard3:1b" is not in the backend`) {
		t.Errorf("serve's models.guard: %+v", c)
	}
	cli := func(model string) preflight.Result {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(w.dataDir, "test.toml"))
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(t.TempDir(), "guard.toml")
		if err := os.WriteFile(conf, []byte(strings.Replace(string(b), "llama-guard3:1b", model, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		// A child process, as an operator runs it: it may enter the
		// backend's network namespace to reach it.
		cmd := exec.Command(buildWarden(t), "preflight", "--json", "--config", conf, "--data-dir", w.dataDir)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
		out, _ := cmd.Output() // exits 1 when a check fails
		var got struct {
			Checks []preflight.Result `json:"checks"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("preflight --json: %v\n%s", err, out)
		}
		return status(got.Checks)
	}
	if c := cli("llama-guard3:1b"); c.Status != preflight.Fail || c.Fix == "" {
		t.Errorf("CLI, missing guard: %+v", c)
	}
	if c := cli("warden-demo"); c.Status != preflight.Pass || !strings.Contains(c.Reason, `"warden-demo" is in the backend`) {
		t.Errorf("CLI, demo model as guard: %+v", c)
	}
}
