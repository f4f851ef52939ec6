package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/internal/testwait"
)

func testLogger() (*slog.Logger, *testlog.Buffer) {
	var buf testlog.Buffer
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
	testwait.For(t, "a good sample", m.Available)
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
	testwait.For(t, "a few samples", func() bool { return s.count() > 3 })
	cancel()
	if err := m.Close(); err != nil { // waits for the goroutine, which has already returned
		t.Fatal(err)
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
