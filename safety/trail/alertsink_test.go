package trail

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

// TestGPUAlertReachesAlertSink: an alert raised through the serve wiring
// (the audit trail's outbox) arrives at an [[alerts.sink]] webhook, signed,
// and an [[audit.sink]] does not get it.
func TestGPUAlertReachesAlertSink(t *testing.T) {
	var (
		mu           sync.Mutex
		alerts       []string
		auditTopics  []string
		badSignature int
	)
	hook := func(audit bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var batch []struct {
				Topic string          `json:"topic"`
				Body  json.RawMessage `json:"body"`
			}
			json.Unmarshal(b, &batch)
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				if audit {
					auditTopics = append(auditTopics, m.Topic)
					continue
				}
				if r.Header.Get("X-Warden-Signature") != "sha256="+outbox.Sign([]byte("s3cret"), r.Header.Get("X-Warden-Timestamp"), b) {
					badSignature++
				}
				alerts = append(alerts, string(m.Body))
			}
		}))
	}
	alertSrv, auditSrv := hook(false), hook(true)
	defer alertSrv.Close()
	defer auditSrv.Close()

	dir := t.TempDir()
	secret := dir + "/alert.secret"
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir, Audit: DefaultAudit()}
	cfg.Audit.Sinks = []SinkConfig{{Name: "trail", Type: "webhook", URL: auditSrv.URL}}
	cfg.Alerts.Sinks = []SinkConfig{{Name: "ops", Type: "webhook", URL: alertSrv.URL, SecretFile: secret}}
	db, err := store.Open(t.Context(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.DiscardHandler)
	trail, err := StartAudit(t.Context(), cfg, db, log)
	if err != nil {
		t.Fatal(err)
	}
	defer trail.close(t.Context(), log)

	var a alerter = trail
	a.Alert(t.Context(), "gpu_temperature", map[string]any{"kind": "gpu_temperature", "active": true, "temp_c": 91})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		done := len(alerts) == 1 && len(auditTopics) > 0
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the alert at the alert sink")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if badSignature > 0 || alerts[0] != `{"active":true,"kind":"gpu_temperature","temp_c":91}` {
		t.Errorf("alert %s, %d bad signatures", alerts[0], badSignature)
	}
	for _, tp := range auditTopics {
		if tp == outbox.TopicAlert {
			t.Error("the audit sink got an alert")
		}
	}
}
