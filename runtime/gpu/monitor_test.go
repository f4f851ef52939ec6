package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline. It asserts nothing about how long that took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// syncBuffer is a log destination safe for the Monitor's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuffer) {
	var buf syncBuffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// samplerFunc is a Sampler from a function, counting its calls.
type samplerFunc struct {
	mu    sync.Mutex
	calls int
	fn    func(call int) (Snapshot, error)
}

func (s *samplerFunc) Sample() (Snapshot, error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.mu.Unlock()
	return s.fn(n)
}

func (s *samplerFunc) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
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
	waitFor(t, "a sample showing device 6 at 77°C", func() bool {
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

func TestMonitorNoGPUReportedOnce(t *testing.T) {
	s := &samplerFunc{fn: func(int) (Snapshot, error) {
		return Snapshot{}, fmt.Errorf("%w: driver gone", ErrNoGPU)
	}}
	log, buf := testLogger()
	m := NewMonitor(s, time.Millisecond)
	m.Logger = log
	m.Start(t.Context())
	defer m.Close()

	if m.Available() {
		t.Errorf("available with no GPU")
	}
	if _, ok := m.Latest(); ok {
		t.Errorf("Latest ok with no GPU")
	}
	if got, want := m.Status(), "no GPU: driver gone"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
	if got := s.count(); got != 1 {
		t.Errorf("sampler called %d times, want 1 (never again after no GPU)", got)
	}
	if got := strings.Count(buf.String(), "no GPU"); got != 1 {
		t.Errorf("log mentions no GPU %d times, want 1:\n%s", got, buf.String())
	}
}

func TestMonitorTransientErrorsLoggedOnceAndRecover(t *testing.T) {
	s := &samplerFunc{fn: func(call int) (Snapshot, error) {
		if call <= 5 {
			return Snapshot{}, errors.New("nvml device count: ERROR_UNKNOWN")
		}
		return Snapshot{Time: time.Now(), Devices: []Device{{Index: 0}}}, nil
	}}
	log, buf := testLogger()
	m := NewMonitor(s, time.Millisecond)
	m.Logger = log
	m.Start(t.Context())
	defer m.Close()

	if got := m.Status(); !strings.HasPrefix(got, "sample failed: ") {
		t.Errorf("status after a failed first sample = %q", got)
	}
	waitFor(t, "a good sample", m.Available)
	if got, want := m.Status(), "ok: 1 GPU"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
	if got := strings.Count(buf.String(), "sample failed"); got != 1 {
		t.Errorf("logged the repeated error %d times, want 1:\n%s", got, buf.String())
	}
}

func TestMonitorStopsWithContext(t *testing.T) {
	s := &samplerFunc{fn: func(int) (Snapshot, error) {
		return Snapshot{Time: time.Now(), Devices: []Device{{}}}, nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	m := NewMonitor(s, time.Millisecond)
	m.Start(ctx)
	waitFor(t, "a few samples", func() bool { return s.count() > 3 })
	cancel()
	if err := m.Close(); err != nil { // waits for the goroutine, which has already returned
		t.Fatal(err)
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

func TestMonitorCloseBeforeStart(t *testing.T) {
	s := &samplerFunc{fn: func(int) (Snapshot, error) { return Snapshot{}, nil }}
	m := NewMonitor(s, 0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Start(t.Context())
	if got := s.count(); got != 0 {
		t.Errorf("sampled %d times after Close, want 0", got)
	}
}
