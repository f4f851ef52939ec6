package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestE2EGuardModel runs the guard-model stage in the real server, on the
// real child, with the demo model as the guard. The demo model answers
// gibberish, not a verdict, so what this proves is the plumbing: the call
// goes through the backend and scheduler, the configured failure mode is
// applied, and it is recorded in the audit trail and the metrics. The
// metrics give the guard call's latency on this machine.
func TestE2EGuardModel(t *testing.T) {
	chat := func(w *wardenProc, stream bool) (int, string, []byte) {
		body, _ := json.Marshal(map[string]any{"model": "warden-demo", "max_tokens": 8, "temperature": 0, "stream": stream,
			"messages": []map[string]string{{"role": "user", "content": "How do I bake bread?"}}})
		status, hdr, resp := w.post(t, "/v1/chat/completions", "application/json", string(body))
		return status, hdr.Get("X-Request-Id"), resp
	}
	safety := func(w *wardenProc, id string) string {
		t.Helper()
		for _, rec := range auditRecords(t, w) {
			if rec["request_id"] == id && rec["kind"] == "completion" {
				b, _ := json.Marshal(rec["safety"])
				return string(b)
			}
		}
		t.Fatalf("no completion record for %s", id)
		return ""
	}

	t.Run("closed", func(t *testing.T) {
		w := startWarden(t, "", "[safety.guard]\nmodel = \"warden-demo\"\ntimeout = \"2m\"\n")
		defer w.stop()
		status, id, resp := chat(w, false)
		if status != http.StatusServiceUnavailable || !strings.Contains(string(resp), `"code":"safety_guard_unavailable"`) {
			t.Fatalf("status %d %s, want 503 safety_guard_unavailable", status, resp)
		}
		if s := safety(w, id); !strings.Contains(s, `{"action":"block","category":"guard_failure","count":1,"direction":"input"}`) {
			t.Errorf("safety decisions %s", s)
		}
		if !strings.Contains(w.log.String(), "safety guard model gave no verdict") || !strings.Contains(w.log.String(), "failure=closed") {
			t.Errorf("no log line for the guard's failure:\n%s", w.log.String())
		}
		fams := scrape(t, w)
		if got := counter(fams, "warden_guard_failures_total", "stage", "prompt", "reason", "unreadable"); got != 1 {
			t.Errorf("guard failures %v, want 1", got)
		}
	})

	t.Run("open", func(t *testing.T) {
		w := startWarden(t, "", "[safety.guard]\nmodel = \"warden-demo\"\non = [\"prompt\", \"answer\"]\nfailure = \"open\"\ntimeout = \"2m\"\n")
		defer w.stop()
		for _, stream := range []bool{false, true} {
			status, id, resp := chat(w, stream)
			if status != http.StatusOK {
				t.Fatalf("stream %v: status %d %s", stream, status, resp)
			}
			if stream && !strings.Contains(string(resp), "[DONE]") {
				t.Errorf("held stream did not end: %s", resp)
			}
			s := safety(w, id)
			for _, dir := range []string{"input", "output"} {
				if !strings.Contains(s, `{"action":"flag","category":"guard_failure","count":1,"direction":"`+dir+`"}`) {
					t.Errorf("stream %v: safety decisions %s lack the %s failure", stream, s, dir)
				}
			}
		}
		fams := scrape(t, w)
		for _, stage := range []string{"prompt", "answer"} {
			if got := counter(fams, "warden_guard_calls_total", "stage", stage, "verdict", "failed"); got != 2 {
				t.Errorf("%s guard calls %v, want 2", stage, got)
			}
		}
		// The latency of a guard call once the model is loaded (the first
		// calls above loaded it), for docs/safety.md.
		const more = 5
		for range more {
			if status, _, resp := chat(w, false); status != http.StatusOK {
				t.Fatalf("status %d %s", status, resp)
			}
		}
		after := scrape(t, w)
		for _, stage := range []string{"prompt", "answer"} {
			h0, h1 := histogram(fams, "warden_guard_duration_seconds", "stage", stage), histogram(after, "warden_guard_duration_seconds", "stage", stage)
			if n := h1.GetSampleCount() - h0.GetSampleCount(); n != more {
				t.Errorf("%s: %d more guard calls timed, want %d", stage, n, more)
			}
			mean := time.Duration((h1.GetSampleSum() - h0.GetSampleSum()) / more * float64(time.Second))
			t.Logf("guard call (%s) on the loaded demo model: mean %v over %d; the first two calls took %v in all",
				stage, mean.Round(time.Millisecond), more, time.Duration(h0.GetSampleSum()*float64(time.Second)).Round(time.Millisecond))
		}
	})
}

func scrape(t *testing.T, w *wardenProc) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series finds the series of family name with the label pairs given.
func series(fams map[string]*dto.MetricFamily, name string, pairs ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(pairs); i += 2 {
			ok = ok && labels[pairs[i]] == pairs[i+1]
		}
		if ok {
			return m
		}
	}
	return nil
}

func counter(fams map[string]*dto.MetricFamily, name string, pairs ...string) float64 {
	return series(fams, name, pairs...).GetCounter().GetValue()
}

func histogram(fams map[string]*dto.MetricFamily, name string, pairs ...string) *dto.Histogram {
	return series(fams, name, pairs...).GetHistogram()
}
