//go:build linux && cgo

package gpu

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestNVMLSampleReadsEveryField(t *testing.T) {
	f := newFakeGPU(t)
	f.set(3, func(s *fakeState) {
		s.used = 10 << 30
		s.util = nvml.Utilization{Gpu: 97, Memory: 55}
		s.tempC = 81
		s.powerMW = 312_500
		s.throttle = nvml.ClocksThrottleReasonSwThermalSlowdown | nvml.ClocksThrottleReasonSwPowerCap
	})
	n := NewNVML(f.server, func() int { return syscall.Getpgrp() })
	defer n.Close()

	snap, err := n.Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if got, want := len(snap.Devices), 8; got != want {
		t.Fatalf("devices = %d, want %d", got, want)
	}
	if snap.Time.IsZero() {
		t.Errorf("snapshot time is zero")
	}
	for i, d := range snap.Devices {
		if d.Index != i || d.UUID != f.uuid(i) || d.Name != "Mock NVIDIA A100-SXM4-40GB" {
			t.Errorf("device %d = index %d uuid %q name %q, want the fake's", i, d.Index, d.UUID, d.Name)
		}
		if d.MemoryTotal != 40<<30 {
			t.Errorf("device %d total = %d, want 40 GiB", i, d.MemoryTotal)
		}
		if len(d.Unavailable) != 0 {
			t.Errorf("device %d unavailable = %v, want none", i, d.Unavailable)
		}
	}
	d := snap.Devices[3]
	want := Device{Index: 3, UUID: f.uuid(3), Name: d.Name, MemoryUsed: 10 << 30, MemoryTotal: 40 << 30,
		GPUUtil: 97, MemUtil: 55, TemperatureC: 81, PowerMilliwatts: 312_500,
		ThrottleReasons: []string{"sw_power_cap", "sw_thermal_slowdown"}}
	if !equalDevice(d, want) {
		t.Errorf("device 3 = %+v\nwant       %+v", d, want)
	}
	if got, want := d.MemoryFree(), uint64(30<<30); got != want {
		t.Errorf("free = %d, want %d", got, want)
	}
	// Every function Sample calls was set by the fake (unset ones panic);
	// prove each was actually reached, once per device.
	for _, call := range []string{"GetMemoryInfo", "GetUtilizationRates", "GetTemperature",
		"GetPowerUsage", "GetCurrentClocksThrottleReasons", "GetComputeRunningProcesses"} {
		if got := f.count(call); got != 8 {
			t.Errorf("%s called %d times, want 8", call, got)
		}
	}
}

func equalDevice(a, b Device) bool {
	return a.Index == b.Index && a.UUID == b.UUID && a.Name == b.Name &&
		a.MemoryUsed == b.MemoryUsed && a.MemoryTotal == b.MemoryTotal &&
		a.GPUUtil == b.GPUUtil && a.MemUtil == b.MemUtil && a.TemperatureC == b.TemperatureC &&
		a.PowerMilliwatts == b.PowerMilliwatts && slices.Equal(a.ThrottleReasons, b.ThrottleReasons) &&
		slices.Equal(a.Processes, b.Processes) && slices.Equal(a.Unavailable, b.Unavailable)
}

func TestNVMLProcessesFilteredByPGID(t *testing.T) {
	self, group := os.Getpid(), syscall.Getpgrp()
	gone := 1 << 30 // beyond pid_max: no such process
	if _, err := os.Stat("/proc/" + strconv.Itoa(gone)); err == nil {
		t.Fatalf("pid %d unexpectedly exists", gone)
	}
	procs := []nvml.ProcessInfo{
		{Pid: uint32(self), UsedGpuMemory: 6 << 30},
		{Pid: uint32(gone), UsedGpuMemory: 1 << 30},
	}
	wantOthers := 0
	if g, err := syscall.Getpgid(1); err == nil && g != group {
		procs = append(procs, nvml.ProcessInfo{Pid: 1, UsedGpuMemory: 2 << 30}) // exists, other group
		wantOthers = 1
	}
	t.Logf("self pid %d group %d; other-group process included: %v", self, group, wantOthers == 1)

	f := newFakeGPU(t)
	f.set(0, func(s *fakeState) { s.procs = procs })
	f.set(1, func(s *fakeState) { s.procs = procs[1:] })

	t.Run("backend group", func(t *testing.T) {
		snap, err := NewNVML(f.server, func() int { return group }).Sample()
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if !snap.Attributed || snap.PGID != group {
			t.Errorf("attributed = %v pgid %d, want true %d", snap.Attributed, snap.PGID, group)
		}
		want := []Process{{PID: self, UsedMemory: 6 << 30}}
		if got := snap.Devices[0].Processes; !slices.Equal(got, want) {
			t.Errorf("device 0 processes = %v, want %v", got, want)
		}
		if got := snap.Devices[1].Processes; len(got) != 0 {
			t.Errorf("device 1 processes = %v, want none (other groups only)", got)
		}
	})
	t.Run("attach mode", func(t *testing.T) {
		before := f.count("GetComputeRunningProcesses")
		snap, err := NewNVML(f.server, func() int { return 0 }).Sample()
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if snap.Attributed {
			t.Errorf("attributed = true in attach mode")
		}
		for _, d := range snap.Devices {
			if len(d.Processes) != 0 {
				t.Errorf("device %d processes = %v, want none in attach mode", d.Index, d.Processes)
			}
		}
		if got := f.count("GetComputeRunningProcesses"); got != before {
			t.Errorf("processes queried %d times in attach mode, want 0", got-before)
		}
	})
}

func TestNVMLUnsupportedFieldLeavesRestOfDevice(t *testing.T) {
	f := newFakeGPU(t)
	f.set(5, func(s *fakeState) { s.failTemp = true; s.powerMW = 123 })
	snap, err := NewNVML(f.server, nil).Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	d := snap.Devices[5]
	if !slices.Equal(d.Unavailable, []string{"temperature"}) || d.TemperatureC != 0 || d.PowerMilliwatts != 123 {
		t.Errorf("device 5 = unavailable %v temp %d power %d, want [temperature] 0 123", d.Unavailable, d.TemperatureC, d.PowerMilliwatts)
	}
}

// TestNVMLFailedInitNeverTouchesDevices uses a fake whose Init fails and
// whose device and shutdown functions are unset: calling any of them panics.
func TestNVMLFailedInitNeverTouchesDevices(t *testing.T) {
	s := dgxa100.New()
	inits := 0
	s.InitFunc = func() nvml.Return { inits++; return nvml.ERROR_LIBRARY_NOT_FOUND }
	s.DeviceGetCountFunc = nil
	s.DeviceGetHandleByIndexFunc = nil
	s.ShutdownFunc = nil
	n := NewNVML(s, nil)
	for range 3 {
		_, err := n.Sample()
		if !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "ERROR_LIBRARY_NOT_FOUND") {
			t.Fatalf("Sample error = %v, want ErrNoGPU with ERROR_LIBRARY_NOT_FOUND", err)
		}
	}
	if err := n.Init(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Init error = %v, want ErrNoGPU", err)
	}
	if inits != 1 {
		t.Errorf("library Init called %d times, want 1", inits)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestNVMLNoDevicesIsNoGPU(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.SUCCESS }
	s.DeviceGetHandleByIndexFunc = nil
	if _, err := NewNVML(s, nil).Sample(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Sample error = %v, want ErrNoGPU", err)
	}
}

func TestParseStatPGID(t *testing.T) {
	tests := []struct {
		name, stat string
		want       int
		wantErr    bool
	}{
		{"plain", "1234 (ollama) S 1 1200 1200 0 -1 4194560", 1200, false},
		{"comm with spaces and parens", "77 (a) b (c) ) R 5 66 66 0", 66, false},
		{"no paren", "77 ollama S 1 66", 0, true},
		{"truncated", "77 (x) S 1", 0, true},
		{"not a number", "77 (x) S 1 abc", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatPGID([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatPGID(%q) = %d, %v; want %d, err %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
	got, err := procPGID(os.Getpid())
	if err != nil || got != syscall.Getpgrp() {
		t.Errorf("procPGID(self) = %d, %v; want %d", got, err, syscall.Getpgrp())
	}
}

func TestThrottleReasons(t *testing.T) {
	tests := []struct {
		mask uint64
		want []string
	}{
		{0, nil},
		{nvml.ClocksThrottleReasonGpuIdle, []string{"gpu_idle"}},
		{nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown,
			[]string{"hw_thermal_slowdown", "hw_power_brake_slowdown"}},
		{1 << 12, []string{"0x1000"}},
	}
	for _, tt := range tests {
		if got := throttleReasons(tt.mask); !slices.Equal(got, tt.want) {
			t.Errorf("throttleReasons(%#x) = %v, want %v", tt.mask, got, tt.want)
		}
	}
}

func TestMonitorSamplesOnInterval(t *testing.T) {
	f := newFakeGPU(t)
	shutdowns := 0
	f.server.ShutdownFunc = func() nvml.Return { shutdowns++; return nvml.SUCCESS }
	log, _ := testLogger()
	m := NewMonitor(NewNVML(f.server, nil), time.Millisecond)
	m.Logger = log
	if got := m.Status(); got != "not started" {
		t.Errorf("status before Start = %q", got)
	}
	m.Start(t.Context())

	if !m.Available() {
		t.Fatalf("not available after Start: %s", m.Status())
	}
	if got, want := m.Status(), "ok: 8 GPUs"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
	f.set(6, func(s *fakeState) { s.tempC = 77; s.used = 1 << 30 })
	testwait.For(t, "a sample showing device 6 at 77°C", func() bool {
		snap, ok := m.Latest()
		return ok && snap.Devices[6].TemperatureC == 77 && snap.Devices[6].MemoryUsed == 1<<30
	})
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if shutdowns != 1 {
		t.Errorf("nvml Shutdown called %d times, want 1", shutdowns)
	}
	// The goroutine is gone: no sample runs after Close returned.
	calls := f.count("GetTemperature")
	m.Start(t.Context())
	if got := f.count("GetTemperature"); got != calls {
		t.Errorf("sampled %d more times after Close", got-calls)
	}
}

// TestNoNVMLOnThisMachine runs the real library loader: on a machine
// without the NVIDIA driver Init fails, and the Monitor must come up in
// "no GPU" state without calling (and crashing in) any device function.
func TestNoNVMLOnThisMachine(t *testing.T) {
	log, buf := testLogger()
	m := NewMonitor(NewNVML(nvml.New(), nil), 0)
	m.Logger = log
	m.Start(t.Context())
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if m.Available() {
		// A machine with a driver: the real path must then sample devices
		// (the no-driver path is also covered by
		// TestNVMLFailedInitNeverTouchesDevices).
		if snap, ok := m.Latest(); !ok || len(snap.Devices) == 0 {
			t.Errorf("driver present (%s) but no devices sampled: %+v", m.Status(), snap)
		}
		return
	}
	t.Logf("status: %s", m.Status())
	if !strings.HasPrefix(m.Status(), "no GPU: ") {
		t.Errorf("status = %q, want a no GPU reason", m.Status())
	}
	if _, ok := m.Latest(); ok {
		t.Errorf("Latest ok without a GPU")
	}
	if got := strings.Count(buf.String(), "no GPU"); got != 1 {
		t.Errorf("log mentions no GPU %d times, want 1:\n%s", got, buf.String())
	}
	// Admission over the empty snapshot allows everything.
	a := &Admission{TempLimitC: 80, TempResumeC: 70, HeadroomBytes: 1 << 30}
	snap, _ := m.Latest()
	if ok, _, reason := a.CanLoad(100<<30, snap); !ok {
		t.Errorf("CanLoad without GPU refused: %s", reason)
	}
	if a.Paused(snap) {
		t.Errorf("paused without GPU")
	}
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
	c := storetest.NewClock(t0)
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
		c.Advance(time.Second)
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
	testwait.For(t, "three samples", func() bool { mu.Lock(); defer mu.Unlock(); return seen >= 3 })
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

// TestAdmissionOverMonitoredFake drives Admission from a Monitor sampling
// the go-nvml dgxa100 fake: memory pressure gates a load, heat pauses
// dispatch and cooling resumes it, with one alert per crossing.
func TestAdmissionOverMonitoredFake(t *testing.T) {
	const gib = 1 << 30
	f := newFakeGPU(t)
	m := NewMonitor(NewNVML(f.server, nil), time.Millisecond)
	m.Start(t.Context())
	defer m.Close()

	var alerts []Alert
	a := &Admission{HeadroomBytes: 2 * gib, TempLimitC: 85, TempResumeC: 75,
		OnAlert: func(al Alert) { alerts = append(alerts, al) }}
	latest := func() Snapshot { s, _ := m.Latest(); return s }
	// until waits for a snapshot satisfying cond and returns it.
	until := func(what string, cond func(Snapshot) bool) Snapshot {
		t.Helper()
		var s Snapshot
		testwait.For(t, what, func() bool { s = latest(); return cond(s) })
		return s
	}

	// 40 GiB boards: a 30 GiB model fits while they are empty.
	if ok, _, reason := a.CanLoad(30*gib, latest()); !ok {
		t.Fatalf("CanLoad on idle GPUs refused: %s", reason)
	}
	for i := range 8 {
		f.set(i, func(s *fakeState) { s.used = 12 * gib })
	}
	snap := until("all boards at 12 GiB used", func(s Snapshot) bool {
		for _, d := range s.Devices {
			if d.MemoryUsed != 12*gib {
				return false
			}
		}
		return true
	})
	if ok, retry, reason := a.CanLoad(27*gib, snap); ok || retry <= 0 || reason == "" {
		t.Errorf("CanLoad(27 GiB) with 28 GiB free and 2 GiB headroom = %v %v %q, want refused", ok, retry, reason)
	}
	if ok, _, reason := a.CanLoad(26*gib, snap); !ok {
		t.Errorf("CanLoad(26 GiB) refused: %s", reason)
	}

	heat := func(c uint32) Snapshot {
		f.set(4, func(s *fakeState) { s.tempC = c })
		return until("device 4 at the new temperature", func(s Snapshot) bool { return s.Devices[4].TemperatureC == c })
	}
	for _, step := range []struct {
		tempC      uint32
		wantPaused bool
		wantAlerts int
	}{{70, false, 0}, {88, true, 1}, {80, true, 1}, {74, false, 2}, {86, true, 3}} {
		if got := a.Paused(heat(step.tempC)); got != step.wantPaused {
			t.Errorf("at %d°C paused = %v, want %v", step.tempC, got, step.wantPaused)
		}
		if len(alerts) != step.wantAlerts {
			t.Fatalf("at %d°C %d alerts, want %d", step.tempC, len(alerts), step.wantAlerts)
		}
	}
	if !alerts[0].Active || alerts[0].Device != 4 || alerts[1].Active || !alerts[2].Active {
		t.Errorf("alerts = %+v", alerts)
	}
}
