package gpu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is how often a Monitor samples when given no interval.
const DefaultInterval = time.Second

// Monitor samples a Sampler on an interval in one goroutine it owns and
// keeps the latest snapshot.
//
// If the sampler reports ErrNoGPU the Monitor logs "no GPU" once, never
// samples again, and reports the reason through Status. Other sampling
// errors are logged when they change and keep the last good snapshot.
type Monitor struct {
	// OnSample, if set, is called in the sampling goroutine after every
	// sample, good or not, with the latest good snapshot (ok false: there
	// is none): a Gate updates from it. After ErrNoGPU it is called once,
	// with ok false. Set it before Start.
	OnSample func(snap Snapshot, ok bool)
	// Logger receives "no GPU" and sampling failures and recoveries (nil:
	// discard). Set it before Start.
	Logger *slog.Logger

	s        Sampler
	interval time.Duration

	mu        sync.RWMutex
	started   bool
	closed    bool
	latest    Snapshot
	have      bool
	noGPU     string // "no GPU: <reason>", once the sampler reported ErrNoGPU
	lastErr   string // last transient sampling error, "" after a success
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewMonitor returns a Monitor over s. An interval ≤ 0 means
// DefaultInterval. If s is an io.Closer (NVML is), the Monitor closes it
// in Close.
func NewMonitor(s Sampler, interval time.Duration) *Monitor {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Monitor{s: s, interval: interval}
}

func (m *Monitor) log() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

// Start takes a first sample at once, so Available, Latest and Status are
// meaningful when it returns, then keeps sampling every interval until ctx
// ends or Close is called. A missing GPU is not an error: the Monitor comes
// up in "no GPU" state and starts no goroutine. Start is a no-op after the
// first call.
func (m *Monitor) Start(ctx context.Context) {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	m.mu.Unlock()

	if !m.sample() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	m.cancel, m.done = cancel, make(chan struct{})
	go m.run(ctx, m.done)
}

func (m *Monitor) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !m.sample() {
				return
			}
		}
	}
}

// sample takes one sample and records it; it returns false once there is no
// GPU, after which the sampler must not be called again.
func (m *Monitor) sample() bool {
	more := m.record(m.s.Sample())
	if m.OnSample != nil {
		m.OnSample(m.Latest())
	}
	return more
}

func (m *Monitor) record(snap Snapshot, err error) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case errors.Is(err, ErrNoGPU):
		reason := strings.TrimPrefix(err.Error(), ErrNoGPU.Error()+": ")
		if reason == ErrNoGPU.Error() {
			reason = "unavailable"
		}
		m.noGPU = ErrNoGPU.Error() + ": " + reason
		m.have = false
		m.log().Warn("gpu telemetry: no GPU", "reason", reason)
		return false
	case err != nil:
		if msg := err.Error(); msg != m.lastErr {
			m.lastErr = msg
			m.log().Warn("gpu telemetry: sample failed", "err", msg)
		}
		return true
	}
	if m.lastErr != "" {
		m.log().Info("gpu telemetry: sampling recovered")
		m.lastErr = ""
	}
	m.latest, m.have = snap, true
	return true
}

// Latest returns the most recent good snapshot, and false if there is none
// (not started yet, no GPU, or no sample has succeeded).
func (m *Monitor) Latest() (Snapshot, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.latest, m.have
}

// Available reports whether the Monitor has a snapshot of at least one GPU.
func (m *Monitor) Available() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.have && m.noGPU == ""
}

// Status describes the telemetry state for /readyz details: "no GPU: <reason>",
// "sample failed: <err>", "not started", "waiting for first sample" or
// "ok: N GPUs".
func (m *Monitor) Status() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	switch {
	case m.noGPU != "":
		return m.noGPU
	case m.lastErr != "":
		return "sample failed: " + m.lastErr
	case !m.started:
		return "not started"
	case !m.have:
		return "waiting for first sample"
	}
	if n := len(m.latest.Devices); n != 1 {
		return "ok: " + strconv.Itoa(n) + " GPUs"
	}
	return "ok: 1 GPU"
}

// Close stops the sampling goroutine, waits for it, and closes the sampler
// if it is an io.Closer. It is safe to call more than once and before Start.
func (m *Monitor) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.started, m.closed = true, true // a Start after Close does nothing
		cancel, done := m.cancel, m.done
		m.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		if c, ok := m.s.(io.Closer); ok {
			err = c.Close()
		}
	})
	return err
}
