package models

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/sched"
)

// fakeModelAPI answers /api/show, /api/tags and /api/ps from maps.
type fakeModelAPI struct {
	mu      sync.Mutex
	show    map[string]*api.ShowResponse
	sizes   map[string]int64
	running []string
	shows   int
}

func (f *fakeModelAPI) Show(_ context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shows++
	if s, ok := f.show[req.Model]; ok {
		return s, nil
	}
	return nil, errors.New("model not found")
}

func (f *fakeModelAPI) List(context.Context) (*api.ListResponse, error) {
	var out api.ListResponse
	for name, size := range f.sizes {
		out.Models = append(out.Models, api.ListModelResponse{Name: name, Model: name, Size: size})
	}
	return &out, nil
}

func (f *fakeModelAPI) ListRunning(context.Context) (*api.ProcessResponse, error) {
	var out api.ProcessResponse
	for _, n := range f.running {
		out.Models = append(out.Models, api.ProcessModelResponse{Name: n, Model: n})
	}
	return &out, nil
}

func llamaShow(family string, caps ...model.Capability) *api.ShowResponse {
	return &api.ShowResponse{
		Details:      api.ModelDetails{Family: family},
		Capabilities: caps,
		ModelInfo: map[string]any{
			"general.architecture":              family,
			family + ".block_count":             float64(32),
			family + ".embedding_length":        float64(4096),
			family + ".attention.head_count":    float64(32),
			family + ".attention.head_count_kv": float64(8),
		},
	}
}

func testModels() *fakeModelAPI {
	return &fakeModelAPI{
		show: map[string]*api.ShowResponse{
			"chat:latest":   llamaShow("llama", model.CapabilityCompletion, model.CapabilityTools),
			"small:latest":  llamaShow("llama", model.CapabilityCompletion),
			"embed:latest":  llamaShow("bert", model.CapabilityEmbedding),
			"vision:latest": llamaShow("mllama", model.CapabilityCompletion, model.CapabilityVision),
		},
		sizes: map[string]int64{"chat:latest": 4 << 30, "embed:latest": 300 << 20},
	}
}

// TestModelSlots mirrors Ollama v0.17.4's load: embedding-only models and
// single-slot architectures get one slot whatever is configured; others
// get runtime.parallel or their runtime.model_slots override.
func TestModelSlots(t *testing.T) {
	f := testModels()
	bm := NewBackendModels(f, RuntimeConfig{Parallel: 4, ContextLength: 4096,
		ModelSlots: map[string]int{"small": 2, "embed": 3}}, slog.New(slog.DiscardHandler))
	for _, tt := range []struct {
		model string
		want  int
	}{
		{"chat:latest", 4},
		{"small:latest", 2},  // override, by its short name
		{"embed:latest", 1},  // embedding-only beats the override
		{"vision:latest", 1}, // mllama: Ollama forces one slot
		{"gone:latest", 4},   // the backend cannot describe it
	} {
		if got := bm.Slots(tt.model); got != tt.want {
			t.Errorf("Slots(%s) = %d, want %d", tt.model, got, tt.want)
		}
	}
	before := f.shows
	bm.Slots("chat:latest")
	if f.shows != before {
		t.Errorf("a second Slots asked /api/show again")
	}
}

// TestModelSlotsBoundBackend: through the scheduler, a counting backend
// never sees more concurrent calls for a model than its slots, however
// many keys send.
func TestModelSlotsBoundBackend(t *testing.T) {
	bm := NewBackendModels(testModels(), RuntimeConfig{Parallel: 4, ContextLength: 4096,
		ModelSlots: map[string]int{"small": 2}}, slog.New(slog.DiscardHandler))
	s := sched.New(sched.Config{Slots: bm.Slots, MaxQueue: -1, MaxQueuePerKey: -1})
	var mu sync.Mutex
	cur, peak := map[string]int{}, map[string]int{}
	models := []string{"chat:latest", "small:latest", "embed:latest", "vision:latest"}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 30 {
				m := models[(g+i)%len(models)]
				release, _, err := s.Acquire(t.Context(), m, []string{"a", "b", "c"}[g%3], 100)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cur[m]++
				peak[m] = max(peak[m], cur[m])
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				cur[m]--
				mu.Unlock()
				release()
			}
		})
	}
	wg.Wait()
	for m, want := range map[string]int{"chat:latest": 4, "small:latest": 2, "embed:latest": 1, "vision:latest": 1} {
		if peak[m] > want || peak[m] < 1 {
			t.Errorf("%s: peak %d concurrent backend calls, want 1..%d", m, peak[m], want)
		}
	}
}

func TestBackendModelsForGate(t *testing.T) {
	f := testModels()
	f.running = []string{"embed:latest"}
	bm := NewBackendModels(f, RuntimeConfig{Parallel: 4, ContextLength: 4096}, slog.New(slog.DiscardHandler))
	loaded, err := bm.Loaded(t.Context())
	if err != nil || len(loaded) != 1 || loaded[0] != "embed:latest" {
		t.Errorf("Loaded = %v, %v", loaded, err)
	}
	need, err := bm.Need(t.Context(), "chat:latest")
	// 32 layers × 4096 × 4 slots × 8 heads × (128+128) × 2 bytes = 2 GiB of KV.
	want := gpu.EstimateVRAM(gpu.ModelSpec{SizeBytes: 4 << 30, Layers: 32, KVHeads: 8, KeyLength: 128, ValueLength: 128}, 4096, 4)
	if err != nil || need != want {
		t.Errorf("Need(chat) = %d, %v; want %d", need, err, want)
	}
	if need, err := bm.Need(t.Context(), "embed:latest"); err != nil || need >= 2<<30 {
		t.Errorf("Need(embed) = %d, %v: want its one slot's KV only", need, err)
	}
	if _, err := bm.Need(t.Context(), "small:latest"); err == nil {
		t.Error("Need of a model not in /api/tags succeeded")
	}
}
