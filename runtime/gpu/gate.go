package gpu

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPendingFor is how long a Gate keeps a model admitted to load
// counted against free VRAM while the backend does not list it as loaded.
const DefaultPendingFor = time.Minute

// Models is what a Gate needs to know of the backend's models.
type Models interface {
	// Loaded names the models the backend holds in memory now (Ollama's
	// /api/ps), spelled as the scheduler names them.
	Loaded(ctx context.Context) ([]string, error)
	// Need estimates the VRAM, in bytes, that loading model takes (see
	// EstimateVRAM). It is asked once per Update for each model held, so
	// it should cache.
	Need(ctx context.Context, model string) (uint64, error)
}

// Gate decides, per model, whether requests may be dispatched to the
// backend: none while Admission pauses for temperature, and for a model the
// backend has not loaded, none while free VRAM is below its estimated need
// plus Admission.HeadroomBytes (the KV cache is allocated at load, so
// memory gates loads, not requests).
//
// Update does the I/O and the deciding, once per GPU sample (hook it to
// Monitor.OnSample); Open only reads the last decision, so it is cheap
// enough for a scheduler to call under its lock. Without usable telemetry
// (no GPU, stale samples) or when the backend cannot say what is loaded,
// everything is open.
//
// A model Open has not seen before is held until the next Update, which
// estimates it: at most one sample interval before a load that fits goes
// ahead. A model admitted to load keeps its need counted against free
// memory until the backend lists it (or PendingFor passes), so two loads
// admitted in the same second do not both count on the same free bytes.
type Gate struct {
	// PendingFor, default DefaultPendingFor; also how long a held model
	// stays held after the last request asked for it.
	PendingFor time.Duration
	// OnChange is called at the end of every Update: the scheduler's Kick,
	// so held requests go once their gate opens.
	OnChange func()
	// OnAlert receives AlertMemory alerts: raised when a model's load is
	// first held, cleared when it is admitted or nobody asks for it any
	// more. Temperature alerts come from Admission.OnAlert.
	OnAlert func(Alert)
	// Logger receives estimate and backend errors (nil: discard).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	adm    *Admission
	models Models

	state atomic.Pointer[gateState]

	askMu sync.Mutex
	asked map[string]time.Time // models held at Open, with the last ask

	mu       sync.Mutex // one Update at a time; guards the fields below
	pending  map[string]pendingLoad
	held     map[string]bool // models with a raised memory alert
	backendE string          // last backend error logged
}

// gateState is one Update's decision; never modified once stored.
type gateState struct {
	paused    bool
	telemetry bool            // false: everything not paused is open
	open      map[string]bool // loaded, or admitted to load
}

type pendingLoad struct {
	need uint64
	at   time.Time
}

// NewGate returns a Gate deciding with adm over what models reports. Until
// the first Update everything is open.
func NewGate(adm *Admission, models Models) *Gate {
	return &Gate{adm: adm, models: models, asked: map[string]time.Time{},
		pending: map[string]pendingLoad{}, held: map[string]bool{}}
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Gate) log() *slog.Logger {
	if g.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Logger
}

// Open reports whether requests for model may go to the backend now. It
// reads the last Update's decision and takes no lock but a short one when
// model is held.
func (g *Gate) Open(model string) bool {
	st := g.state.Load()
	switch {
	case st == nil:
		return true
	case st.paused:
		return false
	case !st.telemetry || st.open[model]:
		return true
	}
	g.askMu.Lock()
	g.asked[model] = g.now()
	g.askMu.Unlock()
	return false
}

// Paused reports whether the last Update paused dispatch for temperature.
func (g *Gate) Paused() bool {
	st := g.state.Load()
	return st != nil && st.paused
}

// Update decides again from snap (ok false: no telemetry) and what the
// backend has loaded, then calls OnChange.
func (g *Gate) Update(ctx context.Context, snap Snapshot, ok bool) {
	g.mu.Lock()
	if !ok {
		snap = Snapshot{}
	}
	next := &gateState{paused: g.adm.Paused(snap)}
	if g.adm.usable(snap) && g.models != nil {
		next.open, next.telemetry = g.decide(ctx, snap)
	}
	if !next.telemetry {
		g.clearHeld(nil)
	}
	g.state.Store(next)
	g.mu.Unlock()
	if g.OnChange != nil {
		g.OnChange()
	}
}

// decide returns the models open for dispatch, or false when the backend
// cannot say what is loaded (then nothing is held).
func (g *Gate) decide(ctx context.Context, snap Snapshot) (map[string]bool, bool) {
	loaded, err := g.models.Loaded(ctx)
	if err != nil {
		if msg := err.Error(); msg != g.backendE {
			g.backendE = msg
			g.log().Warn("gpu admission: cannot list loaded models; model loads are not gated", "err", msg)
		}
		return nil, false
	}
	g.backendE = ""
	now := g.now()
	pendingFor := g.PendingFor
	if pendingFor <= 0 {
		pendingFor = DefaultPendingFor
	}
	open := make(map[string]bool, len(loaded)+len(g.pending))
	for _, name := range loaded {
		open[name] = true
		delete(g.pending, name)
	}
	var reserved uint64
	for name, p := range g.pending {
		if now.Sub(p.at) > pendingFor {
			delete(g.pending, name)
			continue
		}
		open[name] = true
		reserved += p.need
	}

	g.askMu.Lock()
	for name, at := range g.asked {
		if open[name] || now.Sub(at) > pendingFor {
			delete(g.asked, name)
		}
	}
	asked := slices.Sorted(maps.Keys(g.asked))
	g.askMu.Unlock()

	for _, name := range asked {
		need, err := g.models.Need(ctx, name)
		if err != nil {
			g.log().Warn("gpu admission: cannot estimate the model's memory; its load is not gated", "model", name, "err", err)
			need = 0
		} else if fits, _, reason := g.adm.CanLoad(need+reserved, snap); !fits {
			if !g.held[name] {
				g.held[name] = true
				g.log().Warn("gpu admission: model load held for GPU memory", "model", name, "need_bytes", need, "reason", reason)
				g.alert(Alert{Time: now, Kind: AlertMemory, Active: true, Model: name, Message: reason})
			}
			continue
		}
		open[name] = true
		reserved += need
		g.pending[name] = pendingLoad{need: need, at: now}
	}
	g.askMu.Lock()
	for name := range open {
		delete(g.asked, name)
	}
	still := maps.Clone(g.asked)
	g.askMu.Unlock()
	g.clearHeld(still)
	return open, true
}

// clearHeld clears the memory alerts of models no longer held (all of
// them when still is nil).
func (g *Gate) clearHeld(still map[string]time.Time) {
	for _, name := range slices.Sorted(maps.Keys(g.held)) {
		if _, ok := still[name]; ok {
			continue
		}
		delete(g.held, name)
		g.alert(Alert{Time: g.now(), Kind: AlertMemory, Active: false, Model: name,
			Message: "model " + name + " is no longer held for GPU memory"})
	}
}

func (g *Gate) alert(al Alert) {
	if g.OnAlert != nil {
		g.OnAlert(al)
	}
}

// ModelSpec is what EstimateVRAM needs to know of a model: its size on
// disk and the shape of its attention, as Ollama's /api/show reports it.
type ModelSpec struct {
	// SizeBytes is the model's size on disk (/api/tags): the weights, which
	// are loaded whole.
	SizeBytes uint64
	// Layers is <arch>.block_count.
	Layers int
	// KVHeads is <arch>.attention.head_count_kv (else head_count).
	KVHeads int
	// KeyLength and ValueLength are the per-head widths
	// (<arch>.attention.key_length / value_length; else
	// embedding_length / head_count).
	KeyLength, ValueLength int
}

// EstimateVRAM estimates the GPU memory a model takes once loaded with
// contextLength tokens of context for each of parallel slots:
//
//	weights  = SizeBytes
//	kv cache = Layers × contextLength × parallel × KVHeads × (KeyLength + ValueLength) × 2 bytes (f16)
//	need     = (weights + kv cache) × 1.1 (compute graph and buffers)
//
// It is a floor of what Ollama reserves (its own estimate also counts the
// output layer and a graph sized by batch), which is why admission adds a
// configured headroom on top. Missing shape fields count as zero: such a
// model is estimated by its weights alone.
func EstimateVRAM(m ModelSpec, contextLength, parallel int) uint64 {
	kv := uint64(max(m.Layers, 0)) * uint64(max(contextLength, 0)) * uint64(max(parallel, 1)) *
		uint64(max(m.KVHeads, 0)) * uint64(max(m.KeyLength, 0)+max(m.ValueLength, 0)) * 2
	need := m.SizeBytes + kv
	return need + need/10
}
