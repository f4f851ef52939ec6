package trail

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store/storetest"
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
	db := storetest.OpenDir(t, dir)
	tr, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer tr.Close(t.Context())

	var a Alerter = tr
	at := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	a.Alert(t.Context(), outbox.GPUAlert{Time: at, Kind: "gpu_temperature", Active: true, TempC: ptr(uint32(91))})
	testwait.For(t, "the alert at the alert sink", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(alerts) == 1 && len(auditTopics) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if badSignature > 0 || alerts[0] != `{"active":true,"kind":"gpu_temperature","message":"","temp_c":91,"time":"2026-11-22T06:00:00Z"}` {
		t.Errorf("alert %s, %d bad signatures", alerts[0], badSignature)
	}
	for _, tp := range auditTopics {
		if tp == outbox.TopicAlert {
			t.Error("the audit sink got an alert")
		}
	}
}

func ptr[T any](v T) *T { return &v }
