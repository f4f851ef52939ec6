package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/runtime/gpu"
)

// modelAPI is what backendModels asks Ollama: its models (/api/tags), one
// model's details (/api/show) and the models loaded now (/api/ps).
type modelAPI interface {
	List(ctx context.Context) (*api.ListResponse, error)
	Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error)
	ListRunning(ctx context.Context) (*api.ProcessResponse, error)
}

// apiAt is an Ollama API client that follows the backend's current
// address (the supervisor may move the child to a new port on restart).
type apiAt struct {
	base func() *url.URL
	hc   *http.Client
}

// NewAPIAt returns an apiAt for the backend at base().
func NewAPIAt(base func() *url.URL, hc *http.Client) apiAt { return apiAt{base: base, hc: hc} }

func (a apiAt) c() *api.Client { return api.NewClient(a.base(), a.hc) }

func (a apiAt) List(ctx context.Context) (*api.ListResponse, error) { return a.c().List(ctx) }
func (a apiAt) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	return a.c().Show(ctx, req)
}
func (a apiAt) ListRunning(ctx context.Context) (*api.ProcessResponse, error) {
	return a.c().ListRunning(ctx)
}

// singleSlotFamilies are the architectures Ollama v0.17.4 loads with one
// slot whatever OLLAMA_NUM_PARALLEL says (server/sched.go, Scheduler.load;
// ollama#4165).
var singleSlotFamilies = []string{"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe"}

// modelFacts is what Warden derives from a model's /api/show.
type modelFacts struct {
	single bool // Ollama runs it with one slot
	spec   gpu.ModelSpec
}

// factsFromShow mirrors Ollama's load: a model without the completion
// capability (embedding-only) or of a single-slot family gets one slot.
// The attention shape comes from "<arch>.*" model info keys.
func factsFromShow(show *api.ShowResponse) modelFacts {
	var f modelFacts
	if len(show.Capabilities) > 0 && !slices.Contains(show.Capabilities, model.CapabilityCompletion) {
		f.single = true
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	family := cmp(show.Details.Family, arch)
	if slices.Contains(singleSlotFamilies, family) {
		f.single = true
	}
	num := func(key string) int {
		switch v := show.ModelInfo[arch+"."+key].(type) {
		case float64:
			return int(v)
		case int:
			return v
		case int64:
			return int(v)
		}
		return 0
	}
	heads := num("attention.head_count")
	f.spec = gpu.ModelSpec{
		Layers:      num("block_count"),
		KVHeads:     cmpInt(num("attention.head_count_kv"), heads),
		KeyLength:   num("attention.key_length"),
		ValueLength: num("attention.value_length"),
	}
	if heads > 0 {
		width := num("embedding_length") / heads
		f.spec.KeyLength = cmpInt(f.spec.KeyLength, width)
		f.spec.ValueLength = cmpInt(f.spec.ValueLength, width)
	}
	return f
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// backendModels answers the scheduler's and the GPU gate's questions about
// models: slots per model (sched.Config.Slots) and what is loaded and how
// much VRAM a load needs (gpu.Models). Facts from /api/show are cached per
// model for factsTTL (a model re-created under the same name is seen after
// that); a failed lookup is retried after failTTL.
type backendModels struct {
	api           modelAPI
	parallel      int            // the backend's OLLAMA_NUM_PARALLEL
	contextLength int            // the backend's OLLAMA_CONTEXT_LENGTH
	overrides     map[string]int // canonical name → slots
	log           *slog.Logger
	now           func() time.Time

	mu    sync.Mutex
	facts map[string]factsEntry // by backend name
}

type factsEntry struct {
	f     modelFacts
	err   error
	until time.Time
}

const (
	factsTTL = time.Minute
	failTTL  = 5 * time.Second
)

// RuntimeConfig is the backend's settings backendModels needs.
type RuntimeConfig struct {
	Parallel      int
	ContextLength int
	ModelSlots    map[string]int
}

// NewBackendModels returns the model facts of the backend a asks.
func NewBackendModels(a modelAPI, rc RuntimeConfig, log *slog.Logger) *backendModels {
	b := &backendModels{api: a, parallel: max(rc.Parallel, 1), contextLength: rc.ContextLength,
		overrides: map[string]int{}, log: log, now: time.Now, facts: map[string]factsEntry{}}
	for name, n := range rc.ModelSlots {
		if c, ok := Canonical(name); ok { // a bad name can match no model
			b.overrides[c] = n
		}
	}
	return b
}

// factsOf returns model's facts, from the cache or /api/show.
func (b *backendModels) factsOf(ctx context.Context, name string) (modelFacts, error) {
	b.mu.Lock()
	e, ok := b.facts[name]
	b.mu.Unlock()
	if ok && b.now().Before(e.until) {
		return e.f, e.err
	}
	show, err := b.api.Show(ctx, &api.ShowRequest{Model: name})
	e = factsEntry{until: b.now().Add(factsTTL)}
	if err != nil {
		e.err, e.until = fmt.Errorf("show model %s: %w", name, err), b.now().Add(failTTL)
	} else {
		e.f = factsFromShow(show)
	}
	b.mu.Lock()
	b.facts[name] = e
	b.mu.Unlock()
	return e.f, e.err
}

// Slots is a model's slots: 1 where Ollama forces one, else the configured
// override, else the backend's parallel setting. When the backend cannot
// describe the model it has runtime.parallel (Ollama will refuse the
// request anyway).
func (b *backendModels) Slots(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := b.factsOf(ctx, name)
	if err == nil && f.single {
		return 1
	}
	if n, ok := b.overrides[canonicalOrEmpty(name)]; ok {
		return min(n, b.parallel)
	}
	return b.parallel
}

// Loaded names the models Ollama holds in memory (/api/ps).
func (b *backendModels) Loaded(ctx context.Context) ([]string, error) {
	ps, err := b.api.ListRunning(ctx)
	if err != nil {
		return nil, fmt.Errorf("list running models: %w", err)
	}
	var out []string
	for _, m := range ps.Models {
		out = append(out, m.Name)
		if m.Model != m.Name {
			out = append(out, m.Model)
		}
	}
	return out, nil
}

// Need estimates the VRAM a load of model takes (gpu.EstimateVRAM): its
// size on disk from /api/tags, its KV cache from /api/show's shape for
// runtime.context_length × the slots Ollama will give it.
func (b *backendModels) Need(ctx context.Context, name string) (uint64, error) {
	f, err := b.factsOf(ctx, name)
	if err != nil {
		return 0, err
	}
	list, err := b.api.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("list models: %w", err)
	}
	want, ok := Canonical(name)
	for _, m := range list.Models {
		if !ok {
			break
		}
		if canonicalOrEmpty(m.Name) == want || canonicalOrEmpty(m.Model) == want {
			f.spec.SizeBytes = uint64(max(m.Size, 0))
			parallel := b.parallel
			if f.single {
				parallel = 1
			}
			return gpu.EstimateVRAM(f.spec, b.contextLength, parallel), nil
		}
	}
	return 0, errors.New("model " + name + " is not in the backend's list")
}

var _ gpu.Models = (*backendModels)(nil)

func canonicalOrEmpty(name string) string {
	c, _ := Canonical(name)
	return c
}
