package main

import (
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/trail"
	"github.com/warden-llm/warden/server"
)

type noGPU struct{}

func (noGPU) Latest() (gpu.Snapshot, bool) { return gpu.Snapshot{}, false }
func (noGPU) Status() string               { return "no GPU: test" }

// registeredNames lists the metric names a registry describes.
func registeredNames(t *testing.T, r *prometheus.Registry) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { r.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// TestGrafanaDashboardMetrics: every metric the shipped dashboard queries
// is one serve registers, so a renamed series cannot leave a panel empty.
func TestGrafanaDashboardMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../scripts/grafana/warden-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}

	// The registry as serve builds it.
	m := server.NewMetrics()
	m.WatchGPU(noGPU{})
	m.WatchQueue(func() sched.Stats { return sched.Stats{} })
	registerRestarts(m.Registry, true, func() int { return 0 })
	registerAudit(m.Registry, &trail.Trail{}, ollama.NewClient(func() *url.URL { return &url.URL{Scheme: "http", Host: "127.0.0.1:1"} }, nil))
	registerGateMetrics(m.Registry, gpu.NewGate(&gpu.Admission{}, nil))
	have := registeredNames(t, m.Registry)

	used := regexp.MustCompile(`\bwarden_[a-z0-9_]+`)
	seen := map[string]bool{}
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, name := range used.FindAllString(tg.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if !have[base] && strings.HasSuffix(base, suffix) {
						base = strings.TrimSuffix(base, suffix)
					}
				}
				seen[base] = true
				if !have[base] {
					t.Errorf("panel %q queries %s, which Warden does not register", p.Title, name)
				}
			}
		}
	}
	if exprs < 20 {
		t.Errorf("dashboard has %d queries; want the full set", exprs)
	}
	for _, want := range []string{"warden_requests_total", "warden_request_duration_seconds", "warden_time_to_first_token_seconds",
		"warden_tokens_total", "warden_queue_depth", "warden_queue_wait_seconds", "warden_backend_in_flight",
		"warden_backend_slots", "warden_backend_restarts_total", "warden_gpu_memory_used_bytes", "warden_gpu_temperature_celsius"} {
		if !seen[want] {
			t.Errorf("dashboard shows no %s", want)
		}
	}
}
