package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/safety/audit/audittest"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// adminKeys is fakeKeys plus an "admin" token with the admin scope.
type adminKeys struct{ fakeKeys }

func (k adminKeys) Authenticate(token string) (*keys.Principal, error) {
	if token == "admin" {
		return &keys.Principal{KeyID: "adm", Scopes: append(keys.DefaultScopes(), keys.ScopeAdmin)}, nil
	}
	return k.fakeKeys.Authenticate(token)
}

func readyz(t *testing.T, url, key string) (int, map[string]any) {
	t.Helper()
	resp, body := send(t, http.MethodGet, url+"/readyz", "", "", key)
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return resp.StatusCode, got
}

// TestReadyzDetailsOnlyForAdmins: without a key (or with a key that is not
// an admin's) /readyz says only ready or not; the backend's raw error and
// the model count go to admin keys.
func TestReadyzDetailsOnlyForAdmins(t *testing.T) {
	var down error
	ts := newTestServer(t, &fakeBackend{}, Config{Keys: adminKeys{}, Ready: func() error { return down }, GPU: fakeGPU{}})
	for _, key := range []string{"", "good", "bad"} {
		if code, got := readyz(t, ts.URL, key); code != 200 || len(got) != 1 || got["status"] != "ready" {
			t.Errorf("key %q: %d %v, want 200 and the status alone", key, code, got)
		}
	}
	if code, got := readyz(t, ts.URL, "admin"); code != 200 || got["models"] != float64(1) || got["backend"] != "ok" || got["gpu"] == nil {
		t.Errorf("admin: %d %v, want the details", code, got)
	}
	down = errors.New("backend exited: signal: killed (pid 4242, /var/lib/warden/ollama)")
	code, got := readyz(t, ts.URL, "")
	if code != 503 || len(got) != 1 || got["status"] != "unavailable" {
		t.Errorf("down, no key: %d %v, want 503 and the status alone", code, got)
	}
	if code, got := readyz(t, ts.URL, "admin"); code != 503 || got["backend"] != down.Error() {
		t.Errorf("down, admin: %d %v, want the backend's error", code, got)
	}
}

// logLines returns the JSON lines logged to buf at level or above.
func logLines(t *testing.T, buf *testlog.Buffer, level slog.Level) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(m["level"].(string))); err != nil {
			t.Fatal(err)
		}
		if lv >= level {
			out = append(out, m)
		}
	}
	return out
}

// TestReadyzAndLogsOnFullDisk is issue 12's full disk: the real audit
// writer over a SQLite file filled to SQLITE_FULL (max_page_count). Every
// request is refused with 503, /readyz says unavailable, and 1000 refusals
// log a bounded number of error lines, the next interval's carrying the
// count; when space returns the next request is served and /readyz is
// ready again.
func TestReadyzAndLogsOnFullDisk(t *testing.T) {
	w, db, _ := realAudit(t)
	var logs testlog.Buffer
	clock := storetest.NewClock(storetest.T0)
	ts := newTestServer(t, &fakeBackend{chat: scripted("ok")}, Config{
		Keys: adminKeys{}, Audit: w, Now: clock.Now, LogRepeatInterval: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	chat := `{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	if resp, out := post(t, ts, "/v1/chat/completions", "", chat); resp.StatusCode != 200 {
		t.Fatalf("before the disk fills: %d %s", resp.StatusCode, out)
	}
	if code, _ := readyz(t, ts.URL, ""); code != 200 {
		t.Fatalf("readyz before the disk fills: %d", code)
	}

	audittest.FillUntilFull(t, db, w)

	const n = 1000
	for i := range n {
		if resp, out := post(t, ts, "/v1/chat/completions", "", chat); resp.StatusCode != 503 || !strings.Contains(out, "audit_unavailable") {
			t.Fatalf("request %d on a full disk: %d %s", i, resp.StatusCode, out)
		}
	}
	if code, got := readyz(t, ts.URL, ""); code != 503 || len(got) != 1 {
		t.Errorf("readyz on a full disk: %d %v, want 503 and the status alone", code, got)
	}
	if code, got := readyz(t, ts.URL, "admin"); code != 503 || got["audit"] == "ok" || got["audit"] == nil {
		t.Errorf("readyz for an admin on a full disk: %d %v, want the audit part named", code, got)
	}
	errs := logLines(t, &logs, slog.LevelError)
	if len(errs) > 4 {
		t.Errorf("%d requests refused for the audit trail logged %d error lines, want one per distinct error", n, len(errs))
	}

	clock.Advance(time.Minute)
	post(t, ts, "/v1/chat/completions", "", chat)
	var counted bool
	for _, l := range logLines(t, &logs, slog.LevelError)[len(errs):] {
		if l["msg"] == "audit: request record not written" && l["repeated"] == float64(n-1) {
			counted = true
		}
	}
	if !counted {
		t.Errorf("the next interval's line does not carry the %d repeats: %v", n-1, logLines(t, &logs, slog.LevelError)[len(errs):])
	}

	w.SetMaxPageCount(1 << 30)
	if resp, out := post(t, ts, "/v1/chat/completions", "", chat); resp.StatusCode != 200 {
		t.Fatalf("after space returned: %d %s", resp.StatusCode, out)
	}
	if code, got := readyz(t, ts.URL, ""); code != 200 {
		t.Errorf("readyz after space returned: %d %v", code, got)
	}
}

// TestRefusedKeysNotLoggedAtInfo: a flood of bad keys logs nothing at info
// or above (the audit trail counts them per IP and minute).
func TestRefusedKeysNotLoggedAtInfo(t *testing.T) {
	var logs testlog.Buffer
	var counted int
	ts := newTestServer(t, &fakeBackend{}, Config{
		Logger:        slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnAuthRefused: func(string) { counted++ },
	})
	const n = 200
	for range n {
		if resp, _ := postKey(t, ts, "/v1/chat/completions", "", `{}`, "bad"); resp.StatusCode != 401 {
			t.Fatalf("bad key: %d", resp.StatusCode)
		}
	}
	if got := logLines(t, &logs, slog.LevelInfo); len(got) != 0 || counted != n {
		t.Errorf("%d refused keys: %d lines at info or above (%v), %d counted", n, len(got), got, counted)
	}
	if got := logLines(t, &logs, slog.LevelDebug); len(got) == 0 {
		t.Error("refused keys are not logged at debug either")
	}
}
