package server

import (
	"testing"

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
