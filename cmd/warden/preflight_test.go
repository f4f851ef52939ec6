package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-llm/warden/safety/preflight"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warden.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type preflightJSON struct {
	Checks []struct {
		Name, Status, Reason, Fix string
	} `json:"checks"`
	OK bool `json:"ok"`
}

func (p preflightJSON) status(name string) string {
	for _, c := range p.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return "missing"
}

// `warden preflight --json` prints the documented shape, exits with an
// error exactly when a check fails, and names the failing checks.
func TestPreflightCLI(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hook.Close)
	for _, tc := range []struct {
		name     string
		config   string
		wantFail []string // checks that must fail
		wantPass []string // checks that must pass
	}{
		{"no sink and fail open", "[audit]\nfail_open = true\n", []string{"logs.sinks", "logs.fail_open"}, []string{"exposure.listen", "exposure.proxy", "host.data_dir"}},
		{"reachable sink", "[[audit.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"" + hook.URL + "/in\"\n", nil, []string{"logs.sinks", "logs.fail_open", "logs.chain", "logs.outbox_lag", "keys.rotation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, err := runCLI(t, dir, "preflight", "--json", "--config", writeConfig(t, tc.config))
			var got preflightJSON
			if jerr := json.Unmarshal([]byte(out), &got); jerr != nil {
				t.Fatalf("preflight --json: %v in %q (err %v)", jerr, out, err)
			}
			if len(got.Checks) < 18 {
				t.Errorf("%d checks, want every check", len(got.Checks))
			}
			if (err == nil) != got.OK {
				t.Errorf("ok=%v but err=%v", got.OK, err)
			}
			if err != nil && !errors.Is(err, errPreflightFailed) {
				t.Errorf("err %v, want errPreflightFailed", err)
			}
			for _, c := range got.Checks {
				if c.Status != "pass" && c.Status != "warn" && c.Status != "fail" {
					t.Errorf("%s: status %q", c.Name, c.Status)
				}
				if c.Status == "fail" && (c.Reason == "" || c.Fix == "") {
					t.Errorf("%s fails without reason or fix: %+v", c.Name, c)
				}
				t.Logf("%-4s %s: %s", c.Status, c.Name, c.Reason)
			}
			for _, n := range tc.wantFail {
				if s := got.status(n); s != "fail" {
					t.Errorf("%s: %s, want fail", n, s)
				}
			}
			for _, n := range tc.wantPass {
				if s := got.status(n); s != "pass" {
					t.Errorf("%s: %s, want pass", n, s)
				}
			}
			if len(tc.wantFail) > 0 && (got.OK || err == nil) {
				t.Errorf("ok=%v err=%v with failing checks", got.OK, err)
			}
		})
	}
}

// The text output gives every check a line and a fix for what fails.
func TestPreflightCLIText(t *testing.T) {
	out, err := runCLI(t, t.TempDir(), "preflight", "--config", writeConfig(t, "[audit]\nfail_open = true\n"))
	if !errors.Is(err, errPreflightFailed) {
		t.Fatalf("err %v, want errPreflightFailed", err)
	}
	for _, want := range []string{"fail  logs.fail_open", "fix: set audit.fail_open = false", "probes.recent", "no probe run stored"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// serve --require-preflight (or server.require_preflight) refuses to start
// while a check fails, naming it, before it listens or starts a backend:
// no Ollama is needed here, and none is started.
func TestServeRequirePreflightRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		args   []string
	}{
		{"flag", "[audit]\nfail_open = true\n", []string{"--require-preflight"}},
		{"config", "[server]\nrequire_preflight = true\n[audit]\nfail_open = true\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"serve", "--listen", "127.0.0.1:0", "--config", writeConfig(t, tc.config)}, tc.args...)
			_, err := runCLI(t, dir, args...)
			if err == nil {
				t.Fatal("serve started with failing preflight checks")
			}
			for _, want := range []string{"refusing to start", "logs.sinks", "logs.fail_open", "fix: set audit.fail_open = false"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "exposure.listen") {
				t.Errorf("a passing check is listed as failed: %v", err)
			}
			if _, statErr := os.Stat(filepath.Join(dir, backendFile)); !os.IsNotExist(statErr) {
				t.Errorf("a backend was started (%s: %v)", backendFile, statErr)
			}
		})
	}
}

// warden_preflight_check has one series per check and status: 1 for the
// check's current status, 0 for the others; none before the first run.
func TestPreflightGauge(t *testing.T) {
	var rep preflight.Report
	ran := false
	reg := prometheus.NewRegistry()
	registerPreflightMetrics(reg, func() (preflight.Report, bool) { return rep, ran })
	if n, err := testutil.GatherAndCount(reg, "warden_preflight_check"); err != nil || n != 0 {
		t.Fatalf("before a run: %d series, %v", n, err)
	}
	rep, ran = preflight.Report{Checks: []preflight.Result{
		{Name: "logs.sinks", Status: preflight.Fail},
		{Name: "host.user", Status: preflight.Warn},
	}}, true
	want := `
# HELP warden_preflight_check Latest preflight result: 1 for each check's current status (pass, warn, fail), 0 for the others.
# TYPE warden_preflight_check gauge
warden_preflight_check{check="host.user",status="fail"} 0
warden_preflight_check{check="host.user",status="pass"} 0
warden_preflight_check{check="host.user",status="warn"} 1
warden_preflight_check{check="logs.sinks",status="fail"} 1
warden_preflight_check{check="logs.sinks",status="pass"} 0
warden_preflight_check{check="logs.sinks",status="warn"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "warden_preflight_check"); err != nil {
		t.Error(err)
	}
}

// The runner reruns the checks every interval with the backend's live
// values, and Close stops its goroutine.
func TestPreflightRunnerReruns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := &preflight.Env{Listen: "127.0.0.1:8080", Isolation: "loopback", LocalAddrs: func() ([]netip.Addr, error) { return nil, nil }}
		p := newPreflightRunner(env, slog.New(slog.DiscardHandler))
		if _, ok := p.Latest(); ok {
			t.Fatal("a report before any run")
		}
		p.Run(t.Context())
		first, _ := p.Latest()
		p.SetBackend("netns, user ollama (uid 999)", 0, &url.URL{Scheme: "http", Host: "127.0.0.1:1"})
		p.Start(t.Context(), time.Hour)
		time.Sleep(time.Hour + time.Second)
		synctest.Wait()
		second, _ := p.Latest()
		p.Close()
		status := func(r preflight.Report) preflight.Status {
			for _, c := range r.Checks {
				if c.Name == "exposure.backend" {
					return c.Status
				}
			}
			return ""
		}
		if status(first) != preflight.Warn || status(second) != preflight.Pass {
			t.Errorf("exposure.backend %s then %s, want warn (loopback) then pass (netns after an hour)", status(first), status(second))
		}
		if !second.At.After(first.At) {
			t.Errorf("the rerun's time %v is not after the first's %v", second.At, first.At)
		}
	})
}
