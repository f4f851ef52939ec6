// Package filter applies Warden's safety policy to text: it runs the
// detectors of package detect over prompts and answers, and per the key's
// profile lets a finding pass, redacts it with a placeholder, flags it, or
// blocks the text. Answers are filtered as they stream, holding back only
// what a detector could still be matching, so a streamed answer and the
// same answer whole come out the same.
package filter

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/warden-llm/warden/safety/detect"
)

// Config sets up an Engine.
type Config struct {
	// Profiles by name; "default" is required.
	Profiles map[string]*Profile
	// Detectors builds the detector set. New calls it once and Reload again
	// (to re-read blocklist files); a failed Reload keeps the old set.
	Detectors func() ([]detect.Detector, error)
	// Secret keys the canary HMAC. Empty disables canaries.
	Secret []byte
	// CanaryMinRun is how many bytes of the system prompt an answer must
	// repeat verbatim to count as a leak (default 64; prompts shorter than
	// that count when repeated whole, if at least 24 bytes long).
	CanaryMinRun int
	// RepeatWindow is how many recent answers the repeat check remembers
	// (default 1024; negative disables it).
	RepeatWindow int
}

// Engine filters text by policy. It is safe for concurrent use; each
// request gets its own Request.
type Engine struct {
	cfg      Config
	dets     atomic.Pointer[[]detect.Detector]
	profiles map[string]*Profile
	repeats  *repeats
	canaries canaryCache
}

// New builds an engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Profiles["default"] == nil {
		return nil, errors.New("filter: no default profile")
	}
	if cfg.Detectors == nil {
		return nil, errors.New("filter: no detectors")
	}
	if cfg.CanaryMinRun <= 0 {
		cfg.CanaryMinRun = 64
	}
	if cfg.RepeatWindow == 0 {
		cfg.RepeatWindow = 1024
	}
	e := &Engine{cfg: cfg, profiles: cfg.Profiles}
	if cfg.RepeatWindow > 0 {
		e.repeats = newRepeats(cfg.RepeatWindow)
	}
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload rebuilds the detectors (re-reading blocklist files). Requests
// already started keep the set they began with. On error the old set stays.
func (e *Engine) Reload() error {
	ds, err := e.cfg.Detectors()
	if err != nil {
		return fmt.Errorf("filter: %w", err)
	}
	e.dets.Store(&ds)
	return nil
}

// Profile returns the named profile; "" means "default".
func (e *Engine) Profile(name string) (*Profile, bool) {
	if name == "" {
		name = "default"
	}
	p, ok := e.profiles[name]
	return p, ok
}

// Request starts filtering one request under the named profile ("" is
// "default"). An unknown profile is an error: a key naming a profile that
// no longer exists must not fall back to something weaker.
func (e *Engine) Request(profile string) (*Request, error) {
	p, ok := e.Profile(profile)
	if !ok {
		return nil, fmt.Errorf("filter: unknown safety profile %q", profile)
	}
	return &Request{e: e, dets: *e.dets.Load(), p: p}, nil
}
