package server

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/sched"
)

type fakeGPU struct{ snap gpu.Snapshot }

func (f fakeGPU) Latest() (gpu.Snapshot, bool) { return f.snap, len(f.snap.Devices) > 0 }
func (f fakeGPU) Status() string               { return "ok" }

func TestQueueAndGPUSeries(t *testing.T) {
	m := NewMetrics()
	m.WatchQueue(func() sched.Stats {
		return sched.Stats{Models: map[string]sched.ModelStats{"demo:latest": {Slots: 4, InFlight: 3, Queued: 7}}}
	})
	m.WatchGPU(fakeGPU{gpu.Snapshot{Devices: []gpu.Device{{Index: 0, Name: "A100", MemoryUsed: 1 << 30, MemoryTotal: 80 << 30, GPUUtil: 50, TemperatureC: 61,
		Processes: []gpu.Process{{PID: 42, UsedMemory: 1 << 29}}}}}})
	for name, want := range map[string]int{
		"warden_queue_depth": 1, "warden_backend_in_flight": 1, "warden_backend_slots": 1,
		"warden_gpu_available": 1, "warden_gpu_memory_used_bytes": 1, "warden_gpu_utilization_ratio": 2, "warden_gpu_process_memory_bytes": 1,
	} {
		if got, err := testutil.GatherAndCount(m.Registry, name); err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
}

// TestObserveSeries: the request series count every request, through the
// cached children too, and a series appears only once something counts
// in it (no ttft without a first token, no token series without tokens).
func TestObserveSeries(t *testing.T) {
	m := NewMetrics()
	ok := outcome{status: 200, usage: usage{PromptTokens: 3, CompletionTokens: 2}}
	for range 3 {
		m.observe("/v1/chat/completions", "demo:latest", "k1", ok, time.Second, 0)
	}
	m.observe("/v1/chat/completions", "demo:latest", "k1", outcome{status: 404}, time.Second, 0)
	m.observe("/v1/chat/completions", "demo:latest", "k2", outcome{status: 200}, time.Second, time.Millisecond)
	for name, want := range map[string]int{
		"warden_requests_total": 2, "warden_request_duration_seconds": 1, "warden_time_to_first_token_seconds": 1, "warden_tokens_total": 2,
	} {
		if got, err := testutil.GatherAndCount(m.Registry, name); err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
	for _, c := range []struct {
		labels []string
		want   float64
	}{{[]string{"/v1/chat/completions", "demo:latest", "200"}, 4}, {[]string{"/v1/chat/completions", "demo:latest", "404"}, 1}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("requests %v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.tokens.WithLabelValues("in", "k1", "demo:latest")); got != 9 {
		t.Errorf("tokens in = %v, want 9", got)
	}
}
