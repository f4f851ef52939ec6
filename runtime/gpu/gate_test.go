package gpu

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// fakeModels is a Models whose answers a test sets.
type fakeModels struct {
	mu      sync.Mutex
	loaded  []string
	need    map[string]uint64
	listErr error
}

func (f *fakeModels) Loaded(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.loaded), f.listErr
}

func (f *fakeModels) Need(_ context.Context, model string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.need[model]
	if !ok {
		return 0, errors.New("no such model")
	}
	return n, nil
}

func (f *fakeModels) set(fn func(*fakeModels)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// TestGateWithoutTelemetry: no GPU, stale samples or a backend that cannot
// list its models leave every model open.
func TestGateWithoutTelemetry(t *testing.T) {
	const gib = 1 << 30
	c := storetest.NewClock(t0)
	adm := &Admission{HeadroomBytes: gib, Now: c.Now}
	models := &fakeModels{need: map[string]uint64{"big:latest": 100 * gib}}
	g := NewGate(adm, models)
	g.Now = c.Now
	full := snapshotOf(Device{MemoryUsed: 40 * gib, MemoryTotal: 40 * gib})

	g.Update(t.Context(), Snapshot{}, false) // no GPU
	if !g.Open("big:latest") {
		t.Error("held without a GPU")
	}
	g.Update(t.Context(), full, true)
	g.Open("big:latest")
	g.Update(t.Context(), full, true)
	if g.Open("big:latest") {
		t.Fatal("big open on a full GPU")
	}
	c.Set(t0.Add(time.Minute)) // the sampler stalled: the snapshot is stale
	g.Update(t.Context(), full, true)
	if !g.Open("big:latest") {
		t.Error("held on a stale snapshot")
	}
	c.Set(t0)
	models.set(func(m *fakeModels) { m.listErr = errors.New("connection refused") })
	g.Update(t.Context(), full, true)
	if !g.Open("big:latest") {
		t.Error("held while the backend cannot list its models")
	}
	models.set(func(m *fakeModels) { m.listErr = nil; m.need = nil })
	g.Update(t.Context(), full, true)
	g.Open("big:latest")
	g.Update(t.Context(), full, true)
	if !g.Open("big:latest") {
		t.Error("held although its need cannot be estimated")
	}
}

func TestEstimateVRAM(t *testing.T) {
	const mib = 1 << 20
	// llama3 8B Q4_K_M: 4.7 GB, 32 layers, 8 KV heads of 128.
	llama := ModelSpec{SizeBytes: 4920 * mib, Layers: 32, KVHeads: 8, KeyLength: 128, ValueLength: 128}
	tests := []struct {
		name          string
		m             ModelSpec
		ctx, parallel int
		want          uint64
	}{
		{"llama3 4k×1", llama, 4096, 1, (4920*mib + 512*mib) * 11 / 10},
		{"llama3 4k×4", llama, 4096, 4, (4920*mib + 2048*mib) * 11 / 10},
		{"shape unknown", ModelSpec{SizeBytes: 1000}, 4096, 4, 1100},
		{"parallel 0 counts as 1", llama, 4096, 0, (4920*mib + 512*mib) * 11 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EstimateVRAM(tt.m, tt.ctx, tt.parallel); got != tt.want {
				t.Errorf("EstimateVRAM = %d MiB, want %d MiB", got/mib, tt.want/mib)
			}
		})
	}
}
