package ollama

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// ErrStopped reports that the supervisor was closed or gave up starting the
// backend; nothing will bring the child back.
var ErrStopped = errors.New("backend supervisor stopped")

// stableAfter is how long a child must stay healthy before a crash restarts
// it after MinBackoff again instead of the doubled delay.
const stableAfter = 30 * time.Second

// Supervisor runs `ollama serve` bound to loopback as a supervised child and
// restarts it, with backoff, when it dies. Create it with NewSupervisor.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	health *http.Client
	box    *sandbox // set by prepare: how the child is isolated

	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the supervise loop has exited
	stopOnce sync.Once

	mu       sync.Mutex
	started  bool
	closed   bool
	port     int
	pid      int
	healthy  bool
	ready    chan struct{} // closed while healthy
	restarts int
}

// NewSupervisor returns a supervisor for cfg; nothing runs until Start.
func NewSupervisor(cfg Config) *Supervisor {
	cfg = cfg.withDefaults()
	s := &Supervisor{
		cfg:   cfg,
		log:   cfg.Logger,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
	}
	s.health = &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: s.DialContext},
		Timeout:   2 * time.Second,
	}
	return s
}

// DialContext connects to an address of the child: in netns isolation it
// enters the child's network namespace for the connection, so the HTTP
// transports that talk to the child must use it (see Runtime.Transport).
func (s *Supervisor) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.box.dial(ctx, network, addr)
}

// Isolation describes how the child is isolated: "netns" or "loopback",
// and its user. It is "none" before Start.
func (s *Supervisor) Isolation() string { return s.box.String() }

// Start reaps what a previous run left behind (the group in the pidfile),
// spawns the child on a free loopback port and returns once it answers
// health, or with an error after which nothing is left running. From then on
// a goroutine, stopped by Close, restarts the child whenever it dies.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("start ollama: supervisor already started or closed")
	}
	s.started = true
	s.mu.Unlock()

	if err := s.prepare(); err != nil {
		close(s.done)
		return fmt.Errorf("start ollama: %w", err)
	}
	s.reapPidfile()
	port, err := freePort(0)
	if err != nil {
		close(s.done)
		return fmt.Errorf("start ollama: %w", err)
	}
	first := make(chan error, 1)
	go s.supervise(port, first)
	select {
	case err := <-first:
		if err != nil {
			<-s.done
			return fmt.Errorf("start ollama: %w", err)
		}
		return nil
	case <-ctx.Done():
		_ = s.Close(context.Background())
		return fmt.Errorf("start ollama: %w", ctx.Err())
	}
}

// prepare validates the config, makes its paths absolute (the child runs in
// its own HOME) and creates that HOME.
func (s *Supervisor) prepare() error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	for _, p := range []*string{&s.cfg.Bin, &s.cfg.DataDir, &s.cfg.ModelsDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if err := os.MkdirAll(childHome(s.cfg), 0o700); err != nil {
		return fmt.Errorf("create ollama home: %w", err)
	}
	if err := os.MkdirAll(s.cfg.ModelsDir, 0o700); err != nil {
		return fmt.Errorf("create models dir: %w", err)
	}
	if err := s.prepareSandbox(); err != nil {
		return err
	}
	s.log.Info("ollama isolation", "isolation", s.box.String())
	return nil
}

// URL returns the child's base URL, http://127.0.0.1:PORT. The port is kept
// across restarts while it stays free. Before Start the port is 0, so
// requests fail to connect instead of going anywhere else.
func (s *Supervisor) URL() *url.URL {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(s.port)}
}

// Healthy reports whether the child is up and has answered health.
func (s *Supervisor) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// Restarts returns how many times the child died and was restarted.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// PID returns the running child's pid (its process group id too), or 0.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Close stops supervising and stops the child's whole process group:
// SIGTERM, then SIGKILL after StopTimeout. It returns once the child has
// been waited for, leftovers are gone, the log readers are done and the
// pidfile is removed, or when ctx is done first (the shutdown then goes on;
// call Close again to wait for it). It is safe to call more than once.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	if !started {
		return nil
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close ollama: %w", ctx.Err())
	}
}

// supervise runs children until Close. The first child's outcome goes to
// first: if it never becomes healthy the loop gives up. The goroutine stays
// on one OS thread: every child is forked from it, and Pdeathsig fires when
// the forking thread exits.
//
// In netns isolation and when the child drops its user, the thread is
// changed for good (its own network namespace, no_new_privs): the goroutine
// then exits still locked, and the Go runtime ends the thread.
func (s *Supervisor) supervise(port int, first chan<- error) {
	runtime.LockOSThread()
	changed, err := s.box.isolateThread()
	if !changed {
		defer runtime.UnlockOSThread()
	}
	defer close(s.done)
	defer s.box.close()
	if err != nil {
		first <- fmt.Errorf("isolate ollama: %w", err)
		return
	}
	s.box.startEgress(s.log)
	defer s.removePidfile()

	backoff := s.cfg.MinBackoff
	for {
		onHealthy := func() {
			if first != nil {
				first <- nil
				first = nil
			}
		}
		stopped, upFor, err := s.runChild(port, onHealthy)
		if stopped {
			return
		}
		if first != nil {
			first <- err
			return
		}
		s.mu.Lock()
		s.restarts++
		n := s.restarts
		s.mu.Unlock()
		if upFor >= stableAfter {
			backoff = s.cfg.MinBackoff
		}
		s.log.Error("ollama died; restarting", "err", err, "restarts", n, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
		if port, err = freePort(port); err != nil {
			s.log.Error("ollama port", "err", err)
		}
	}
}

// runChild spawns one child on port and runs it until it dies or Close is
// called (stopped). It returns how long the child was healthy and why it
// ended; nothing of the child is left running when it returns.
func (s *Supervisor) runChild(port int, onHealthy func()) (stopped bool, upFor time.Duration, err error) {
	c, err := s.spawn(port)
	if err != nil {
		return false, 0, err
	}
	hctx, hcancel := context.WithTimeout(context.Background(), s.cfg.StartTimeout)
	hres := make(chan error, 1)
	go func() { hres <- s.probe(hctx, c.url) }()
	defer func() {
		hcancel()
		if hres != nil {
			<-hres
		}
	}()

	var upSince time.Time
	for {
		select {
		case herr := <-hres:
			hres = nil
			if herr != nil {
				s.stopChild(c, false)
				return false, 0, fmt.Errorf("ollama not healthy after %s: %w", s.cfg.StartTimeout, herr)
			}
			upSince = time.Now()
			s.setHealthy(true)
			s.log.Info("ollama healthy", "pid", c.pid, "url", c.url.String())
			onHealthy()
		case <-c.exited:
			s.setHealthy(false)
			s.stopChild(c, false)
			if !upSince.IsZero() {
				upFor = time.Since(upSince)
			}
			return false, upFor, fmt.Errorf("ollama exited: %w", exitError(c.waitErr))
		case <-s.stop:
			s.setHealthy(false)
			s.stopChild(c, true)
			return true, 0, nil
		}
	}
}

// exitError keeps a nil wait result distinguishable: a clean exit is still
// unexpected for a server.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

func (s *Supervisor) setHealthy(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up == s.healthy {
		return
	}
	s.healthy = up
	if up {
		close(s.ready)
	} else {
		s.ready = make(chan struct{})
	}
}

// probe polls GET /api/version until it answers 200 or ctx is done.
func (s *Supervisor) probe(ctx context.Context, base *url.URL) error {
	return probeHealth(ctx, s.health, base)
}

// probeHealth polls GET base/api/version through hc, backing off from 20ms
// to 500ms, until it answers 200 or ctx is done.
func probeHealth(ctx context.Context, hc *http.Client, base *url.URL) error {
	u := base.JoinPath("/api/version").String()
	var last error
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health status %d", resp.StatusCode)
		}
		last = err
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		}
	}
}
