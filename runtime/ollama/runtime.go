package ollama

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Runtime is the model runtime Warden serves from: a supervised child it
// started (Start), or an Ollama that was already running (Attach), which
// Warden neither supervises nor stops.
type Runtime struct {
	sup *Supervisor // nil when attached
	url *url.URL    // when attached
}

// Attach uses the Ollama already serving at rawURL.
func Attach(rawURL string) (*Runtime, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runtime.ollama_url: want http(s)://host:port, got %q", rawURL)
	}
	return &Runtime{url: u}, nil
}

// WaitHealthy waits up to timeout for an attached backend to answer health
// (an Ollama started beside Warden may come up after it), and returns an
// error naming the last failure when it does not. A supervised runtime is
// healthy once Start returned, so it returns at once.
func (r *Runtime) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	if r.sup != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		Timeout:   2 * time.Second,
	}
	if err := probeHealth(ctx, hc, r.url); err != nil {
		return fmt.Errorf("ollama at %s not healthy after %s: %w", r.url.Redacted(), timeout, err)
	}
	return nil
}

// Start finds the ollama binary (cfg.Bin if set, else as Finder.Find
// does), starts it as a supervised child and waits until it is healthy.
// The caller closes the Runtime.
func Start(ctx context.Context, cfg Config) (*Runtime, error) {
	finder, err := NewFinder()
	if err != nil {
		return nil, err
	}
	if cfg.Bin, err = finder.Find(ctx, cfg.Bin); err != nil {
		return nil, err
	}
	sup := NewSupervisor(cfg)
	sup.log.Info("starting ollama", "bin", cfg.Bin, "models_dir", cfg.ModelsDir, "parallel", cfg.NumParallel, "context_length", cfg.ContextLength)
	if err := sup.Start(ctx); err != nil {
		_ = sup.Close(context.Background())
		return nil, fmt.Errorf("start ollama: %w", err)
	}
	return &Runtime{sup: sup}, nil
}

// URL is the backend's address now (a restarted child may have moved).
func (r *Runtime) URL() *url.URL {
	if r.sup == nil {
		return r.url
	}
	return r.sup.URL()
}

// Transport returns an HTTP transport for the backend (NewTransport's):
// for a supervised child it dials through the child's isolation, so the
// child's port need not exist in Warden's network namespace.
func (r *Runtime) Transport() *http.Transport {
	t := NewTransport()
	if r.sup != nil {
		t.DialContext = r.sup.DialContext
	}
	return t
}

// Isolation describes how the backend is isolated (see
// Supervisor.Isolation); "attached" for a backend Warden did not start.
func (r *Runtime) Isolation() string {
	if r.sup == nil {
		return "attached"
	}
	return r.sup.Isolation()
}

// Ready reports whether the backend can take requests: a child that is
// restarting cannot. An attached backend is asked by its callers.
func (r *Runtime) Ready() error {
	if r.sup != nil && !r.sup.Healthy() {
		return errors.New("ollama child is restarting")
	}
	return nil
}

// Supervised reports whether Warden runs the backend.
func (r *Runtime) Supervised() bool { return r.sup != nil }

// PGID is the child's process group, for per-process GPU memory; 0 when
// attached.
func (r *Runtime) PGID() int {
	if r.sup == nil {
		return 0
	}
	return r.sup.PID() // the child leads its own group
}

// Restarts counts the child's restarts; 0 when attached.
func (r *Runtime) Restarts() int {
	if r.sup == nil {
		return 0
	}
	return r.sup.Restarts()
}

// Close stops a supervised child and its runners; an attached backend is
// left running.
func (r *Runtime) Close(ctx context.Context) error {
	if r.sup == nil {
		return nil
	}
	return r.sup.Close(ctx)
}
