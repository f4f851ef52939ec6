package models

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/runtime/gpu"
)

// API is what a Catalog asks Ollama: its models (/api/tags), one model's
// details (/api/show) and the models loaded now (/api/ps). The backend
// client, runtime/ollama's Client, is one; it follows the backend to a new
// address when the supervisor restarts it.
type API interface {
	List(ctx context.Context) (*api.ListResponse, error)
	Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error)
	ListRunning(ctx context.Context) (*api.ProcessResponse, error)
}

// Info is one model as the backend lists it.
type Info struct {
	Name     string // the backend's name, e.g. "warden-demo:latest"
	Digest   string // its manifest's digest: another digest is another model
	Modified time.Time
	Size     int64 // bytes on disk
}

// ErrNotFound is the error of a name that is no model the backend has, or
// no model name at all.
var ErrNotFound = errors.New("model not found")

// Config holds a Catalog's settings; zero values take the defaults.
type Config struct {
	// Parallel is the backend's OLLAMA_NUM_PARALLEL: the slots of every
	// model Ollama does not force to one (below 1: 1).
	Parallel int
	// ContextLength is the backend's OLLAMA_CONTEXT_LENGTH, for the KV
	// cache in the VRAM estimate.
	ContextLength int
	// Slots gives models fewer slots than Parallel (model name, in any
	// spelling → slots). Names that are no model name are ignored.
	Slots map[string]int
	// TTL is how long the backend's model list is reused (default
	// DefaultTTL).
	TTL time.Duration
	// MissInterval is how old the list must be before a name it does not
	// have lists the models again (default DefaultMissInterval): a model
	// pulled a moment ago is found that much later at most, and a flood
	// of unknown names costs one /api/tags call per interval.
	MissInterval time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

const (
	// DefaultTTL is how long a Catalog reuses the backend's model list.
	DefaultTTL = 5 * time.Second
	// DefaultMissInterval is the default Config.MissInterval.
	DefaultMissInterval = time.Second
	// failTTL is how long a failed /api/show is remembered.
	failTTL = 5 * time.Second
	// slotsTimeout bounds the backend calls of one Slots.
	slotsTimeout = 5 * time.Second
)

// Catalog answers every question Warden asks about the backend's models:
// what a name resolves to (Resolve, All), its slots (Slots), what is
// loaded (Loaded), the VRAM a load needs (Need) and its embedding width
// (EmbeddingWidth). Consumers hold it through interfaces of their own.
//
// It holds one cache: the model list (/api/tags), reused for Config.TTL.
// A name missing from a list older than Config.MissInterval refreshes it,
// so a model pulled a moment ago is found; a list younger than that
// answers for the names it lacks (the negative cache), so unknown names
// cost at most one /api/tags call per interval. Callers that need a
// refresh at once share one call (single flight), made outside the
// lookups' lock. What /api/show says of a model is kept for as long
// as the list holds its digest (a model re-created under the same name has
// another digest); a failed /api/show is retried after a few seconds.
// What is loaded (/api/ps) changes by the second and is never cached.
type Catalog struct {
	api       API
	cfg       Config
	overrides map[string]int // canonical name → slots

	mu      sync.Mutex
	flight  *flight // the /api/tags call under way, nil when none
	failed  error   // the last /api/tags call's error, nil after a success
	failAt  time.Time
	gen     int // refreshes so far; 0: never listed
	fetched time.Time
	byName  map[string]Info // canonical name → model
	list    []Info          // as listed; replaced whole, never modified
	facts   map[string]factsEntry
}

// flight is one /api/tags call that callers share: err is set before done
// is closed.
type flight struct {
	done chan struct{}
	err  error
}

type factsEntry struct {
	f     modelFacts
	err   error
	until time.Time // when err is forgotten
}

// NewCatalog returns a catalog of the models a reports.
func NewCatalog(a API, cfg Config) *Catalog {
	cfg.Parallel = max(cfg.Parallel, 1)
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MissInterval <= 0 {
		cfg.MissInterval = DefaultMissInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Catalog{api: a, cfg: cfg, overrides: map[string]int{}, facts: map[string]factsEntry{}}
	for name, n := range cfg.Slots {
		if key, ok := Canonical(name); ok {
			c.overrides[key] = n
		}
	}
	return c
}

var _ gpu.Models = (*Catalog)(nil)

// Resolve finds the model called name, in any spelling (see Canonical).
// A name that is no model gives an error wrapping ErrNotFound; a backend
// that cannot list its models, that error.
func (c *Catalog) Resolve(ctx context.Context, name string) (Info, error) {
	key, ok := Canonical(name)
	if !ok {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	c.mu.Lock()
	m, hit := c.byName[key]
	gen, fresh := c.gen, c.freshLocked()
	recent := c.gen > 0 && c.cfg.Now().Sub(c.fetched) < c.cfg.MissInterval
	c.mu.Unlock()
	switch {
	case hit && fresh:
		return m, nil
	case !hit && recent:
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err := c.refresh(ctx, gen); err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	m, hit = c.byName[key]
	c.mu.Unlock()
	if !hit {
		return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return m, nil
}

// Invalidate makes the next lookup list the backend's models again: a
// Governor calls it after it changes what a name points to.
func (c *Catalog) Invalidate() {
	c.mu.Lock()
	c.fetched = time.Time{}
	c.mu.Unlock()
}

// All lists the backend's models. The slice is shared: do not modify it.
func (c *Catalog) All(ctx context.Context) ([]Info, error) {
	c.mu.Lock()
	list, gen, fresh := c.list, c.gen, c.freshLocked()
	c.mu.Unlock()
	if fresh {
		return list, nil
	}
	if err := c.refresh(ctx, gen); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.list, nil
}

func (c *Catalog) freshLocked() bool {
	return c.gen > 0 && c.cfg.Now().Sub(c.fetched) < c.cfg.TTL
}

// refresh lists the models again, unless another caller did since the
// caller saw refresh number gen. Callers that need a refresh at once
// share one call: the first makes it, the others wait for it (or for
// their context). A failed call is the answer for Config.MissInterval.
func (c *Catalog) refresh(ctx context.Context, gen int) error {
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return nil
	}
	if c.failed != nil && c.cfg.Now().Sub(c.failAt) < c.cfg.MissInterval {
		err := c.failed // a backend that cannot list is asked once per interval
		c.mu.Unlock()
		return err
	}
	f := c.flight
	if f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f = &flight{done: make(chan struct{})}
	c.flight = f
	c.mu.Unlock()
	f.err = c.fetch(ctx)
	c.mu.Lock()
	c.flight = nil
	switch {
	case f.err == nil:
		c.failed = nil
	case ctx.Err() == nil: // not the caller giving up: the backend failed
		c.failed, c.failAt = f.err, c.cfg.Now()
	}
	c.mu.Unlock()
	close(f.done)
	return f.err
}

// fetch calls /api/tags and installs its answer.
func (c *Catalog) fetch(ctx context.Context) error {
	resp, err := c.api.List(ctx)
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	byName := make(map[string]Info, len(resp.Models))
	list := make([]Info, 0, len(resp.Models))
	digests := map[string]bool{}
	for _, lm := range resp.Models {
		key, ok := Canonical(lm.Name)
		if !ok {
			continue
		}
		m := Info{Name: lm.Name, Digest: lm.Digest, Modified: lm.ModifiedAt, Size: lm.Size}
		byName[key] = m
		list = append(list, m)
		digests[factsKey(m)] = true
	}
	for _, lm := range resp.Models { // the model field, where it differs
		if key, ok := Canonical(lm.Model); ok {
			if _, dup := byName[key]; !dup {
				if m, ok := byName[canonicalOrEmpty(lm.Name)]; ok {
					byName[key] = m
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byName, c.list, c.fetched = byName, list, c.cfg.Now()
	c.gen++
	for key := range c.facts {
		if !digests[key] {
			delete(c.facts, key)
		}
	}
	return nil
}

func canonicalOrEmpty(name string) string {
	c, _ := Canonical(name)
	return c
}

// factsKey is the key of a model's facts: its digest, else its name.
func factsKey(m Info) string {
	if m.Digest != "" {
		return m.Digest
	}
	return "name:" + m.Name
}

// factsOf returns what /api/show says of m, from the cache or the backend.
// resolveFacts resolves name and reads its facts from /api/show.
func (c *Catalog) resolveFacts(ctx context.Context, name string) (Info, modelFacts, error) {
	m, err := c.Resolve(ctx, name)
	if err != nil {
		return m, modelFacts{}, err
	}
	f, err := c.factsOf(ctx, m)
	return m, f, err
}

func (c *Catalog) factsOf(ctx context.Context, m Info) (modelFacts, error) {
	key := factsKey(m)
	c.mu.Lock()
	e, ok := c.facts[key]
	c.mu.Unlock()
	if ok && (e.err == nil || c.cfg.Now().Before(e.until)) {
		return e.f, e.err
	}
	show, err := c.api.Show(ctx, &api.ShowRequest{Model: m.Name})
	if err != nil {
		err = fmt.Errorf("show model %s: %w", m.Name, err)
		if ctx.Err() != nil {
			return modelFacts{}, err // the caller gave up; the model may be fine
		}
		e = factsEntry{err: err, until: c.cfg.Now().Add(failTTL)}
	} else {
		e = factsEntry{f: factsFromShow(show)}
	}
	c.mu.Lock()
	c.facts[key] = e
	c.mu.Unlock()
	return e.f, e.err
}

// Slots is a model's slots (sched.Config.Slots): 1 where Ollama forces one
// (embedding-only models, single-slot families), else its Config.Slots
// entry (at most Parallel), else Parallel. When the backend cannot
// describe the model it has its Config.Slots entry or Parallel (Ollama
// will refuse the request anyway).
func (c *Catalog) Slots(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), slotsTimeout)
	defer cancel()
	if m, err := c.Resolve(ctx, name); err == nil {
		if f, err := c.factsOf(ctx, m); err == nil && f.single {
			return 1
		}
	}
	if n, ok := c.overrides[canonicalOrEmpty(name)]; ok {
		return min(n, c.cfg.Parallel)
	}
	return c.cfg.Parallel
}

// Loaded names the models Ollama holds in memory (/api/ps), by name, by
// model where it differs, and as the model list spells the same model
// (the name Resolve gives, which the scheduler and the GPU gate use).
func (c *Catalog) Loaded(ctx context.Context) ([]string, error) {
	ps, err := c.api.ListRunning(ctx)
	if err != nil {
		return nil, fmt.Errorf("list running models: %w", err)
	}
	var out []string
	add := func(name string) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ps.Models {
		add(m.Name)
		add(m.Model)
		if listed, ok := c.byName[canonicalOrEmpty(m.Name)]; ok {
			add(listed.Name)
		}
	}
	return out, nil
}

// Need estimates the VRAM a load of the model takes (gpu.EstimateVRAM):
// its size on disk from /api/tags, its KV cache from /api/show's shape for
// Config.ContextLength × the slots Ollama will give it (Parallel, or 1).
func (c *Catalog) Need(ctx context.Context, name string) (uint64, error) {
	m, f, err := c.resolveFacts(ctx, name)
	if err != nil {
		return 0, err
	}
	spec := f.spec
	spec.SizeBytes = uint64(max(m.Size, 0))
	parallel := c.cfg.Parallel
	if f.single {
		parallel = 1
	}
	return gpu.EstimateVRAM(spec, c.cfg.ContextLength, parallel), nil
}

// EmbeddingWidth reports the width of the model's embeddings
// ("<arch>.embedding_length" in /api/show).
func (c *Catalog) EmbeddingWidth(ctx context.Context, name string) (int, error) {
	m, f, err := c.resolveFacts(ctx, name)
	if err != nil {
		return 0, err
	}
	if f.width <= 0 {
		return 0, fmt.Errorf("show model %s: no embedding length", m.Name)
	}
	return f.width, nil
}

// PromptOverhead is an upper bound, in bytes, of the text the model's
// template adds to every prompt whatever its messages: its default system
// prompt (Modelfile SYSTEM), its default messages (MESSAGE), and the
// template's own text outside its actions (role markers, tool preambles),
// counted once. It is read from /api/show, cached with the model's other
// details.
func (c *Catalog) PromptOverhead(ctx context.Context, name string) (int, error) {
	_, f, err := c.resolveFacts(ctx, name)
	if err != nil {
		return 0, err
	}
	return f.overhead, nil
}

// templateText counts the bytes of a Go template outside its {{ }}
// actions: what it writes into every prompt, at least once.
func templateText(tmpl string) int {
	n := 0
	for {
		i := strings.Index(tmpl, "{{")
		if i < 0 {
			return n + len(tmpl)
		}
		n += i
		j := strings.Index(tmpl[i:], "}}")
		if j < 0 {
			return n
		}
		tmpl = tmpl[i+j+2:]
	}
}

// singleSlotFamilies are the architectures Ollama v0.17.4 loads with one
// slot whatever OLLAMA_NUM_PARALLEL says (server/sched.go, Scheduler.load;
// ollama#4165).
var singleSlotFamilies = []string{"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe"}

// modelFacts is what Warden derives from a model's /api/show.
type modelFacts struct {
	single bool // Ollama runs it with one slot
	spec   gpu.ModelSpec
	width  int // <arch>.embedding_length
	// overhead is what the template adds to every prompt, in bytes (see
	// Catalog.PromptOverhead).
	overhead int
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
	f.overhead = len(show.System) + templateText(show.Template)
	for _, m := range show.Messages {
		f.overhead += len(m.Role) + len(m.Content) + len(m.Thinking)
	}
	heads := num("attention.head_count")
	f.width = num("embedding_length")
	f.spec = gpu.ModelSpec{
		Layers:      num("block_count"),
		KVHeads:     cmpInt(num("attention.head_count_kv"), heads),
		KeyLength:   num("attention.key_length"),
		ValueLength: num("attention.value_length"),
	}
	if heads > 0 {
		width := f.width / heads
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
