package models

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// fakeAPI is an API whose calls are function fields.
type fakeAPI struct {
	list func(ctx context.Context) (*api.ListResponse, error)
	show func(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error)
	ps   func(ctx context.Context) (*api.ProcessResponse, error)
}

func (f *fakeAPI) List(ctx context.Context) (*api.ListResponse, error) { return f.list(ctx) }
func (f *fakeAPI) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	return f.show(ctx, req)
}
func (f *fakeAPI) ListRunning(ctx context.Context) (*api.ProcessResponse, error) { return f.ps(ctx) }

// fakeModel is one model of a fakeOllama.
type fakeModel struct {
	digest string
	size   int64
	show   *api.ShowResponse // nil: /api/show fails
}

// fakeOllama is a fakeAPI over a table of models, counting calls.
type fakeOllama struct {
	fakeAPI
	mu      sync.Mutex
	models  map[string]fakeModel // by backend name
	running []string
	lists   int
	shows   map[string]int // by model
}

func newFakeOllama(models map[string]fakeModel) *fakeOllama {
	f := &fakeOllama{models: models, shows: map[string]int{}}
	f.list = func(context.Context) (*api.ListResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lists++
		var out api.ListResponse
		for name, m := range f.models {
			out.Models = append(out.Models, api.ListModelResponse{Name: name, Model: name, Digest: m.digest, Size: m.size})
		}
		return &out, nil
	}
	f.show = func(_ context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.shows[req.Model]++
		if m, ok := f.models[req.Model]; ok && m.show != nil {
			return m.show, nil
		}
		return nil, errors.New("model not found")
	}
	f.ps = func(context.Context) (*api.ProcessResponse, error) {
		var out api.ProcessResponse
		for _, n := range f.running {
			out.Models = append(out.Models, api.ProcessModelResponse{Name: n, Model: n})
		}
		return &out, nil
	}
	return f
}

func (f *fakeOllama) set(name string, m fakeModel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.models[name] = m
}

func (f *fakeOllama) counts(model string) (lists, shows int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists, f.shows[model]
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

func testModels() *fakeOllama {
	return newFakeOllama(map[string]fakeModel{
		"chat:latest":   {digest: "sha256:c1", size: 4 << 30, show: llamaShow("llama", model.CapabilityCompletion, model.CapabilityTools)},
		"small:latest":  {digest: "sha256:s1", size: 1 << 30, show: llamaShow("llama", model.CapabilityCompletion)},
		"embed:latest":  {digest: "sha256:e1", size: 300 << 20, show: llamaShow("bert", model.CapabilityEmbedding)},
		"vision:latest": {digest: "sha256:v1", size: 2 << 30, show: llamaShow("mllama", model.CapabilityCompletion, model.CapabilityVision)},
		"broken:latest": {digest: "sha256:b1", size: 1 << 30}, // /api/show fails
	})
}

func newTestCatalog(f *fakeOllama, clock *storetest.Clock) *Catalog {
	cfg := Config{Parallel: 4, ContextLength: 4096, Slots: map[string]int{"small": 2, "embed": 3, "broken": 3, "bad name!": 1}}
	if clock != nil {
		cfg.Now = clock.Now
	}
	return NewCatalog(f, cfg)
}

// TestModelSlots mirrors Ollama v0.17.4's load: embedding-only models and
// single-slot architectures get one slot whatever is configured; others
// get runtime.parallel or their runtime.model_slots override.
func TestModelSlots(t *testing.T) {
	c := newTestCatalog(testModels(), storetest.NewClock(time.Time{}))
	for _, tt := range []struct {
		model string
		want  int
	}{
		{"chat:latest", 4},
		{"chat", 4},
		{"small:latest", 2},  // override, by its short name
		{"embed:latest", 1},  // embedding-only beats the override
		{"vision:latest", 1}, // mllama: Ollama forces one slot
		{"broken:latest", 3}, // no /api/show: the override
		{"gone:latest", 4},   // the backend does not have it
		{"bad name!", 4},     // no model name: not its "override"
	} {
		if got := c.Slots(tt.model); got != tt.want {
			t.Errorf("Slots(%s) = %d, want %d", tt.model, got, tt.want)
		}
	}
}

// TestCatalogOneListPerTTL: resolve, all, slots, need and embedding width
// share one /api/tags call per TTL.
func TestCatalogOneListPerTTL(t *testing.T) {
	f, clock := testModels(), storetest.NewClock(time.Unix(1e9, 0))
	c := newTestCatalog(f, clock)
	ask := func() {
		t.Helper()
		if m, err := c.Resolve(t.Context(), "registry.ollama.ai/library/chat:latest"); err != nil || m.Name != "chat:latest" || m.Digest != "sha256:c1" {
			t.Fatalf("Resolve(chat) = %+v, %v", m, err)
		}
		if all, err := c.All(t.Context()); err != nil || len(all) != 5 {
			t.Fatalf("All = %v, %v; want 5 models", all, err)
		}
		if n := c.Slots("embed"); n != 1 {
			t.Fatalf("Slots(embed) = %d, want 1", n)
		}
		if _, err := c.Need(t.Context(), "chat:latest"); err != nil {
			t.Fatalf("Need(chat): %v", err)
		}
		if w, err := c.EmbeddingWidth(t.Context(), "Embed"); err != nil || w != 4096 {
			t.Fatalf("EmbeddingWidth(embed) = %d, %v; want 4096", w, err)
		}
	}
	ask()
	ask()
	if lists, _ := f.counts(""); lists != 1 {
		t.Errorf("%d /api/tags calls within the TTL, want 1", lists)
	}
	clock.Advance(DefaultTTL - time.Nanosecond)
	ask()
	if lists, _ := f.counts(""); lists != 1 {
		t.Errorf("%d /api/tags calls just before the TTL ends, want 1", lists)
	}
	clock.Advance(time.Nanosecond)
	ask()
	ask()
	if lists, _ := f.counts(""); lists != 2 {
		t.Errorf("%d /api/tags calls over two TTLs, want 2", lists)
	}

	// A name a list older than the miss interval lacks refreshes it once:
	// a model pulled a moment ago is found, one that is not there is not,
	// and another miss within the interval costs no call.
	f.set("new:latest", fakeModel{digest: "sha256:n1", show: llamaShow("llama", model.CapabilityCompletion)})
	if _, err := c.Resolve(t.Context(), "new"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(new) within the miss interval = %v, want ErrNotFound from the list", err)
	}
	clock.Advance(DefaultMissInterval)
	if m, err := c.Resolve(t.Context(), "new"); err != nil || m.Name != "new:latest" {
		t.Errorf("Resolve(new) after it was pulled = %+v, %v", m, err)
	}
	if _, err := c.Resolve(t.Context(), "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(gone) = %v, want ErrNotFound", err)
	}
	lists, _ := f.counts("")
	if lists != 3 {
		t.Errorf("%d /api/tags calls after two misses in one interval, want 3", lists)
	}
	// A name that cannot be a model costs no call.
	if _, err := c.Resolve(t.Context(), "bad name!"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(bad name!) = %v, want ErrNotFound", err)
	}
	if after, _ := f.counts(""); after != lists {
		t.Errorf("a bad name called /api/tags")
	}
}

// TestCatalogUnknownNameFlood: a flood of unknown names, one after
// another and at once, costs at most one /api/tags call per miss
// interval.
func TestCatalogUnknownNameFlood(t *testing.T) {
	f, clock := testModels(), storetest.NewClock(time.Unix(1e9, 0))
	c := newTestCatalog(f, clock)
	miss := func(i int) {
		if _, err := c.Resolve(context.Background(), fmt.Sprintf("nope-%d", i)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(nope-%d) = %v, want ErrNotFound", i, err)
		}
	}
	for i := range 1000 {
		miss(i)
	}
	if lists, _ := f.counts(""); lists != 1 {
		t.Errorf("%d /api/tags calls for 1000 unknown names in one interval, want 1", lists)
	}
	for round := range 3 {
		clock.Advance(DefaultMissInterval)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() { miss(i) })
		}
		wg.Wait()
		if lists, _ := f.counts(""); lists != 2+round {
			t.Errorf("after %d intervals of concurrent misses: %d /api/tags calls, want %d", round+1, lists, 2+round)
		}
	}
	// Known names are answered from the list meanwhile.
	if m, err := c.Resolve(t.Context(), "chat"); err != nil || m.Name != "chat:latest" {
		t.Errorf("Resolve(chat) = %+v, %v", m, err)
	}
}

// TestCatalogSharedRefresh: callers that need a refresh at once share one
// /api/tags call, and one that gives up while waiting returns at once.
func TestCatalogSharedRefresh(t *testing.T) {
	f := testModels()
	list := f.list
	entered, release := make(chan struct{}), make(chan struct{})
	f.list = func(ctx context.Context) (*api.ListResponse, error) {
		close(entered)
		<-release
		return list(ctx)
	}
	c := newTestCatalog(f, nil)
	first := make(chan error, 1)
	go func() {
		_, err := c.Resolve(context.Background(), "chat")
		first <- err
	}()
	<-entered // the first caller's call is under way
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Resolve(ctx, "chat"); !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter that gave up: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	if lists, _ := f.counts(""); lists != 1 {
		t.Errorf("%d /api/tags calls, want 1", lists)
	}
}

// TestCatalogShowPerDigest: /api/show is asked once per model digest: not
// again when the list is refreshed, again when the model is re-created.
func TestCatalogShowPerDigest(t *testing.T) {
	f, clock := testModels(), storetest.NewClock(time.Unix(1e9, 0))
	c := newTestCatalog(f, clock)
	c.Slots("chat:latest")
	c.Slots("chat")
	c.EmbeddingWidth(t.Context(), "chat")
	clock.Advance(2 * DefaultTTL)
	if n := c.Slots("chat"); n != 4 {
		t.Fatalf("Slots(chat) = %d, want 4", n)
	}
	if _, shows := f.counts("chat:latest"); shows != 1 {
		t.Errorf("%d /api/show calls for one digest, want 1", shows)
	}

	// Re-created as a single-slot architecture: a new digest.
	f.set("chat:latest", fakeModel{digest: "sha256:c2", size: 4 << 30, show: llamaShow("qwen3vl", model.CapabilityCompletion)})
	if n := c.Slots("chat"); n != 4 {
		t.Errorf("Slots(chat) = %d before the list is stale, want the old 4", n)
	}
	clock.Advance(DefaultTTL)
	if n := c.Slots("chat"); n != 1 {
		t.Errorf("Slots(chat) = %d after it was re-created as qwen3vl, want 1", n)
	}
	if _, shows := f.counts("chat:latest"); shows != 2 {
		t.Errorf("%d /api/show calls for two digests, want 2", shows)
	}
}

// TestCatalogShowFailure: a failed /api/show is asked again only after
// failTTL, and a call its caller gave up on is not remembered.
func TestCatalogShowFailure(t *testing.T) {
	f, clock := testModels(), storetest.NewClock(time.Unix(1e9, 0))
	c := newTestCatalog(f, clock)
	if _, err := c.EmbeddingWidth(t.Context(), "broken"); err == nil {
		t.Fatal("EmbeddingWidth of a model /api/show fails for succeeded")
	}
	c.Slots("broken")
	if _, shows := f.counts("broken:latest"); shows != 1 {
		t.Errorf("%d /api/show calls within failTTL, want 1", shows)
	}
	clock.Advance(failTTL)
	c.Slots("broken")
	if _, shows := f.counts("broken:latest"); shows != 2 {
		t.Errorf("%d /api/show calls after failTTL, want 2", shows)
	}

	ctx, cancel := context.WithCancel(t.Context())
	f.show = func(ctx context.Context, _ *api.ShowRequest) (*api.ShowResponse, error) {
		cancel()
		return nil, ctx.Err()
	}
	if _, err := c.Need(ctx, "small"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Need with a cancelled call = %v", err)
	}
	f.show = func(context.Context, *api.ShowRequest) (*api.ShowResponse, error) {
		return llamaShow("llama", model.CapabilityCompletion), nil
	}
	if _, err := c.Need(t.Context(), "small"); err != nil {
		t.Errorf("Need after a cancelled call: %v; want the call made again", err)
	}
}

// TestCatalogListFailure: a backend that cannot list is an error, not a
// missing model; it is asked again once the miss interval has passed, not
// on every call.
func TestCatalogListFailure(t *testing.T) {
	f := testModels()
	down := errors.New("backend down")
	ok := f.list
	calls := 0
	f.list = func(context.Context) (*api.ListResponse, error) { calls++; return nil, down }
	clock := storetest.NewClock(time.Unix(1e9, 0))
	c := newTestCatalog(f, clock)
	if _, err := c.Resolve(t.Context(), "chat"); !errors.Is(err, down) || errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve with the backend down = %v, want %v", err, down)
	}
	for range 100 {
		if _, err := c.Resolve(t.Context(), "nope"); !errors.Is(err, down) {
			t.Fatalf("Resolve(nope) with the backend down = %v, want %v", err, down)
		}
	}
	if _, err := c.All(t.Context()); !errors.Is(err, down) {
		t.Errorf("All with the backend down = %v, want %v", err, down)
	}
	if calls != 1 {
		t.Errorf("%d /api/tags calls to a failing backend within the interval, want 1", calls)
	}
	f.list = ok
	clock.Advance(DefaultMissInterval)
	if all, err := c.All(t.Context()); err != nil || len(all) != 5 {
		t.Errorf("All once the backend is back = %v, %v", all, err)
	}
}

// TestModelSlotsBoundBackend: through the scheduler, a counting backend
// never sees more concurrent calls for a model than its slots, however
// many keys send.
func TestModelSlotsBoundBackend(t *testing.T) {
	c := newTestCatalog(testModels(), nil)
	s := sched.New(sched.Config{Slots: c.Slots, MaxQueue: -1, MaxQueuePerKey: -1})
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

func TestCatalogForGate(t *testing.T) {
	f := testModels()
	f.running = []string{"embed:latest"}
	c := newTestCatalog(f, storetest.NewClock(time.Time{}))
	loaded, err := c.Loaded(t.Context())
	if err != nil || len(loaded) != 1 || loaded[0] != "embed:latest" {
		t.Errorf("Loaded = %v, %v", loaded, err)
	}
	// Spelled otherwise by /api/ps, a model is also named as listed.
	if _, err := c.All(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.running = []string{"registry.ollama.ai/library/Chat"}
	loaded, err = c.Loaded(t.Context())
	if err != nil || !slices.Contains(loaded, "chat:latest") {
		t.Errorf("Loaded = %v, %v; want chat:latest among them", loaded, err)
	}
	need, err := c.Need(t.Context(), "chat:latest")
	// 32 layers × 4096 × 4 slots × 8 heads × (128+128) × 2 bytes = 2 GiB of KV.
	want := gpu.EstimateVRAM(gpu.ModelSpec{SizeBytes: 4 << 30, Layers: 32, KVHeads: 8, KeyLength: 128, ValueLength: 128}, 4096, 4)
	if err != nil || need != want {
		t.Errorf("Need(chat) = %d, %v; want %d", need, err, want)
	}
	if need, err := c.Need(t.Context(), "embed:latest"); err != nil || need >= 2<<30 {
		t.Errorf("Need(embed) = %d, %v: want its one slot's KV only", need, err)
	}
	if _, err := c.Need(t.Context(), "gone:latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Need of a model not in /api/tags = %v, want ErrNotFound", err)
	}
	if _, err := c.Need(t.Context(), "broken:latest"); err == nil {
		t.Error("Need of a model /api/show cannot describe succeeded")
	}
}

func TestCatalogEmbeddingWidth(t *testing.T) {
	f := testModels()
	f.set("noshape:latest", fakeModel{digest: "sha256:x1", show: &api.ShowResponse{ModelInfo: map[string]any{"general.architecture": "x"}}})
	c := newTestCatalog(f, storetest.NewClock(time.Time{}))
	if w, err := c.EmbeddingWidth(t.Context(), "embed"); err != nil || w != 4096 {
		t.Errorf("EmbeddingWidth(embed) = %d, %v; want 4096", w, err)
	}
	if w, err := c.EmbeddingWidth(t.Context(), "noshape"); err == nil {
		t.Errorf("EmbeddingWidth(noshape) = %d, want an error", w)
	}
	if _, err := c.EmbeddingWidth(t.Context(), "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("EmbeddingWidth(gone) = %v, want ErrNotFound", err)
	}
}

// TestCatalogPromptOverhead: the default system prompt, default messages
// and the template's own text are what a model adds to every prompt.
func TestCatalogPromptOverhead(t *testing.T) {
	show := llamaShow("llama", model.CapabilityCompletion)
	show.System = "You are a pirate."                                                              // 17
	show.Template = "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|end|>" // 10+8+7
	show.Messages = []api.Message{{Role: "user", Content: "ahoy"}}                                 // 4+4
	f := newFakeOllama(map[string]fakeModel{"pirate:latest": {digest: "sha256:p1", show: show}})
	c := newTestCatalog(f, nil)
	if n, err := c.PromptOverhead(t.Context(), "pirate"); err != nil || n != 17+25+8 {
		t.Errorf("PromptOverhead = %d, %v; want 50", n, err)
	}
	if _, err := c.PromptOverhead(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("PromptOverhead(nope) = %v, want ErrNotFound", err)
	}
	for tmpl, want := range map[string]int{"": 0, "abc": 3, "{{ x }}": 0, "a{{ x }}b{{": 2, "{{ unclosed": 0} {
		if got := templateText(tmpl); got != want {
			t.Errorf("templateText(%q) = %d, want %d", tmpl, got, want)
		}
	}
}
