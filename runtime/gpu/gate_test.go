package gpu

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
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

// TestGateOverNVMLMock drives a Gate from samples of the go-nvml dgxa100
// fake (eight 40 GiB boards): memory pressure holds a load and raises an
// alert, freed memory admits it, a loaded model is never held, heat pauses
// every model and cooling resumes them, and every Update kicks.
func TestGateOverNVMLMock(t *testing.T) {
	const gib = 1 << 30
	f := newFakeGPU(t)
	n := NewNVML(f.server, nil)
	defer n.Close()
	c := &clock{now: t0}
	adm := &Admission{HeadroomBytes: 2 * gib, TempLimitC: 85, TempResumeC: 75, StaleAfter: -1, Now: c.Now}
	models := &fakeModels{loaded: []string{"small:latest"}, need: map[string]uint64{"big:latest": 30 * gib, "mid:latest": 20 * gib}}
	g := NewGate(adm, models)
	g.Now = c.Now
	var alerts []Alert
	adm.OnAlert = func(a Alert) { alerts = append(alerts, a) }
	g.OnAlert = func(a Alert) { alerts = append(alerts, a) }
	kicks := 0
	g.OnChange = func() { kicks++ }
	update := func() {
		t.Helper()
		c.now = c.now.Add(time.Second)
		snap, err := n.Sample()
		if err != nil {
			t.Fatal(err)
		}
		g.Update(t.Context(), snap, true)
	}
	fill := func(used uint64) {
		for i := range 8 {
			f.set(i, func(s *fakeState) { s.used = used })
		}
	}

	if !g.Open("big:latest") {
		t.Fatal("closed before the first Update; want open")
	}
	fill(12 * gib) // 28 GiB free on every board: big (30+2) does not fit
	update()
	if !g.Open("small:latest") {
		t.Error("a loaded model is held")
	}
	if g.Open("big:latest") || g.Open("mid:latest") {
		t.Fatal("unseen unloaded models open before an Update estimated them")
	}
	update()
	if g.Open("big:latest") {
		t.Error("big (30 GiB + 2 headroom) open with 28 GiB free")
	}
	if !g.Open("mid:latest") {
		t.Error("mid (20 GiB + 2 headroom) held with 28 GiB free")
	}
	if len(alerts) != 1 || alerts[0].Kind != AlertMemory || !alerts[0].Active || alerts[0].Model != "big:latest" {
		t.Fatalf("alerts = %+v, want one memory alert for big", alerts)
	}
	update() // still held: no second alert
	if len(alerts) != 1 {
		t.Fatalf("alerts = %+v, want still one", alerts)
	}

	// mid is loading (pending): its 20 GiB count against the free memory
	// until the backend lists it, so big stays held even with 38 GiB free.
	fill(2 * gib)
	update()
	if g.Open("big:latest") {
		t.Error("big admitted while mid's pending load takes 20 of 38 free GiB")
	}
	models.set(func(m *fakeModels) { m.loaded = append(m.loaded, "mid:latest") })
	fill(2*gib + 20*gib) // mid has loaded: 18 GiB free
	update()
	if g.Open("big:latest") || !g.Open("mid:latest") {
		t.Error("after mid loaded: want big held, mid open")
	}
	models.set(func(m *fakeModels) { m.loaded = []string{"small:latest"} }) // mid unloaded
	fill(2 * gib)
	update()
	if !g.Open("big:latest") {
		t.Error("big held with 38 GiB free and nothing pending")
	}
	if len(alerts) != 2 || alerts[1].Active || alerts[1].Model != "big:latest" {
		t.Fatalf("alerts = %+v, want big's alert cleared", alerts)
	}

	// Heat pauses every model, loaded or not; cooling below the resume
	// threshold opens them again.
	f.set(5, func(s *fakeState) { s.tempC = 90 })
	update()
	if g.Open("small:latest") || g.Open("big:latest") || !g.Paused() {
		t.Error("open at 90°C; want paused")
	}
	f.set(5, func(s *fakeState) { s.tempC = 80 })
	update()
	if g.Open("small:latest") {
		t.Error("open at 80°C, above the resume threshold")
	}
	f.set(5, func(s *fakeState) { s.tempC = 70 })
	update()
	if !g.Open("small:latest") || g.Paused() {
		t.Error("held at 70°C; want resumed")
	}
	if len(alerts) != 4 || alerts[2].Kind != AlertTemperature || !alerts[2].Active || alerts[3].Active {
		t.Fatalf("alerts = %+v, want a raised and a cleared temperature alert", alerts)
	}
	if kicks != 9 {
		t.Errorf("%d kicks, want one per Update (9)", kicks)
	}
}

// TestGateWithoutTelemetry: no GPU, stale samples or a backend that cannot
// list its models leave every model open.
func TestGateWithoutTelemetry(t *testing.T) {
	const gib = 1 << 30
	c := &clock{now: t0}
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
	c.now = t0.Add(time.Minute) // the sampler stalled: the snapshot is stale
	g.Update(t.Context(), full, true)
	if !g.Open("big:latest") {
		t.Error("held on a stale snapshot")
	}
	c.now = t0
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

// TestMonitorOnSample: the hook sees every sample; without a GPU it is
// called once, with ok false.
func TestMonitorOnSample(t *testing.T) {
	f := newFakeGPU(t)
	m := NewMonitor(NewNVML(f.server, nil), time.Millisecond)
	var mu sync.Mutex
	seen := 0
	m.OnSample = func(s Snapshot, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if ok && len(s.Devices) == 8 {
			seen++
		}
	}
	m.Start(t.Context())
	waitFor(t, "three samples", func() bool { mu.Lock(); defer mu.Unlock(); return seen >= 3 })
	m.Close()

	calls := 0
	none := NewMonitor(&samplerFunc{fn: func(int) (Snapshot, error) { return Snapshot{}, ErrNoGPU }}, time.Millisecond)
	none.OnSample = func(_ Snapshot, ok bool) {
		calls++
		if ok {
			t.Error("OnSample ok without a GPU")
		}
	}
	none.Start(t.Context())
	none.Close()
	if calls != 1 {
		t.Errorf("OnSample called %d times without a GPU, want 1", calls)
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
