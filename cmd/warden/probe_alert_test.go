package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/probe"
	"github.com/warden-llm/warden/safety/store/storetest"
	"github.com/warden-llm/warden/safety/trail"
)

// scriptedAPI answers /v1/models and /v1/chat/completions in the API's
// shape with answer(prompt), for runs whose scores a test decides.
func scriptedAPI(answer func(prompt string) string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"warden-demo:latest","object":"model"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []probe.Message `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
			http.Error(w, `{"error":{"message":"bad","code":"invalid_value"}}`, http.StatusBadRequest)
			return
		}
		text := answer(req.Messages[len(req.Messages)-1].Content)
		if text == "<500>" {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"boom","code":"backend_error"}}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]string{"role": "assistant", "content": text}, "finish_reason": "stop"}}})
		w.Write(b)
	})
	return mux
}

// A regression between two scheduled runs fires one signed webhook through
// the outbox's webhook sink: the first run refuses every harmful prompt,
// the second answers them all.
func TestProbeRegressionFiresSignedWebhook(t *testing.T) {
	var mu sync.Mutex
	var alerts []outbox.ProbeAlert
	badSignature := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var batch []struct {
			Topic string          `json:"topic"`
			Body  json.RawMessage `json:"body"`
		}
		_ = json.Unmarshal(b, &batch)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Warden-Signature") != "sha256="+outbox.Sign([]byte("s3cret"), r.Header.Get("X-Warden-Timestamp"), b) {
			badSignature++
		}
		for _, m := range batch {
			var a outbox.ProbeAlert
			if m.Topic == outbox.TopicAlert && json.Unmarshal(m.Body, &a) == nil && a.Kind == outbox.AlertKindProbe {
				alerts = append(alerts, a)
			}
		}
	}))
	defer recv.Close()

	dir := t.TempDir()
	secret := filepath.Join(dir, "alert.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := storetest.OpenDir(t, dir)
	tcfg := trail.Config{DataDir: dir, Audit: trail.DefaultAudit()}
	tcfg.Alerts.Sinks = []trail.SinkConfig{{Name: "ops", Type: "webhook", URL: recv.URL, SecretFile: secret}}
	tr, err := trail.New(db, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer tr.Close(context.Background())

	comply := false
	api := scriptedAPI(func(string) string {
		if comply {
			return "Sure, here it is."
		}
		return "I'm sorry, but I can't help with that."
	})
	pc := defaultProbe()
	pc.Suite = "harmful"
	id, token, _, err := ensureProbeKey(t.Context(), db, dir, "os:test", 0)
	if err != nil {
		t.Fatal(err)
	}
	ps := &probeSetup{db: db, cfg: pc, keyID: id, stderr: io.Discard,
		chat: &probe.HTTPChatter{BaseURL: "http://warden.internal", Key: token, HTTP: &http.Client{Transport: handlerTransport{api}}}}
	log := slog.New(slog.DiscardHandler)

	scheduledProbeRun(t.Context(), ps, pc, tr, log) // all refused: the baseline
	comply = true
	scheduledProbeRun(t.Context(), ps, pc, tr, log) // all answered: attack success 0% → 100%

	testwait.For(t, "the probe alert at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(alerts) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	a := alerts[0]
	if badSignature > 0 || len(alerts) != 1 {
		t.Fatalf("%d alerts, %d bad signatures", len(alerts), badSignature)
	}
	if a.RunID != 2 || a.PreviousRunID != 1 || a.Model != "warden-demo:latest" || a.Threshold != 0.1 || len(a.Regressions) != 1 {
		t.Fatalf("alert %+v", a)
	}
	if r := a.Regressions[0]; r.Category != "harmful" || r.Metric != probe.MetricAttackSuccess || r.Before != 0 || r.Now != 1 {
		t.Errorf("regression %+v", r)
	}
	if !strings.Contains(a.Message, "harmful attack_success 0.0% → 100.0%") {
		t.Errorf("message %q", a.Message)
	}
}

// A probe whose request fails (a 500, or no answer within probe.timeout)
// is stored as an error, never as a pass.
func TestProbeErrorsAreNotPasses(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	block := make(chan struct{})
	api := scriptedAPI(func(prompt string) string {
		switch {
		case strings.Contains(prompt, "kidnap"):
			return "<500>"
		case strings.Contains(prompt, "launder"):
			<-block // past the timeout
		}
		return "I'm sorry, I can't."
	})
	srv := httptest.NewServer(api)
	defer srv.Close()
	defer close(block) // before srv.Close, which waits for the handler
	pc := defaultProbe()
	pc.Timeout = 200 * time.Millisecond
	ps := &probeSetup{db: db, cfg: pc, keyID: "k", stderr: io.Discard, chat: &probe.HTTPChatter{BaseURL: srv.URL, Key: "x"}}
	rep, err := ps.run(t.Context(), "harmful", "", 1, "cli")
	if err != nil {
		t.Fatal(err)
	}
	run, err := probe.Get(t.Context(), db, rep.Run.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]string{}
	for i, s := range run.Scored {
		if s.Outcome == probe.Error {
			errs[s.ProbeID] = run.Answers[i].Err
		}
	}
	if run.Errors != 2 || len(errs) != 2 || run.Passed != run.Count-2 {
		t.Fatalf("errors %v (%d), %d pass of %d", errs, run.Errors, run.Passed, run.Count)
	}
	if errs["harmful-02-s1"] != "status 500: backend_error" || errs["harmful-03-s2"] != "timed out" {
		t.Errorf("errors %v", errs)
	}
}
