package main

import (
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestE2EMetrics scrapes /metrics after traffic and parses it.
func TestE2EMetrics(t *testing.T) {
	w := sharedWarden(t)
	if _, err := w.client().Chat.Completions.New(ctxT(t), chatParams("count me", 3)); err != nil {
		t.Fatal(err)
	}
	_, user := createKey(t, w, "--name", "not-admin")
	get := func(key string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, w.base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := get(user); resp.StatusCode != http.StatusForbidden {
		t.Errorf("/metrics with a non-admin key: %d, want 403", resp.StatusCode)
	}
	resp := get(w.key)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for _, name := range []string{
		"warden_requests_total", "warden_request_duration_seconds", "warden_time_to_first_token_seconds",
		"warden_tokens_total", "warden_in_flight_requests", "warden_backend_restarts_total",
		"warden_audit_records_total", "warden_gpu_available", "warden_queue_wait_seconds",
		"warden_usage_write_failures_total",
	} {
		if families[name] == nil {
			t.Errorf("series %s missing", name)
		}
	}
	var chats float64
	for _, m := range families["warden_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["endpoint"] == "/v1/chat/completions" && labels["status"] == "200" && labels["model"] == "warden-demo:latest" {
			chats += m.GetCounter().GetValue()
		}
	}
	if chats < 1 {
		t.Errorf("no answered chat request counted: %v", families["warden_requests_total"])
	}
	if v := families["warden_audit_records_total"].GetMetric()[0].GetCounter().GetValue(); v < 2 {
		t.Errorf("audit records %v, want at least the request and completion records", v)
	}
}
