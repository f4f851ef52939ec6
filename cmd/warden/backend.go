package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/store"
)

// backendFile, in the data dir, holds the URL of the backend the running
// server uses, so admin commands reach the same Ollama.
const backendFile = "backend.url"

func writeBackendURL(dataDir string, u *url.URL) error {
	if err := store.WriteFileAtomic(filepath.Join(dataDir, backendFile), []byte(u.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", backendFile, err)
	}
	return nil
}

// backendURL finds the backend: runtime.ollama_url if configured, else the
// one the running server recorded in the data dir.
func backendURL(cfg Config) (*url.URL, error) {
	raw := cfg.Runtime.OllamaURL
	if raw == "" {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, backendFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no backend found in %s: is `warden serve` running with this data dir?", cfg.DataDir)
		}
		if err != nil {
			return nil, err
		}
		raw = strings.TrimSpace(string(b))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad backend url %q", raw)
	}
	return u, nil
}

// backendClient is an Ollama API client for the backend the running server
// uses (entering its network namespace when it has one), and its closer.
func backendClient(cfg Config) (*api.Client, *url.URL, func(), error) {
	u, err := backendURL(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	tr := ollama.NewTransport()
	closeNS := func() {}
	if cfg.Runtime.OllamaURL == "" { // the server's child: maybe in its own network namespace
		dial, closer := ollama.ChildDialer(cfg.DataDir)
		closeNS = closer
		if dial != nil {
			tr.DialContext = dial
		}
	}
	return api.NewClient(u, &http.Client{Transport: tr}), u, closeNS, nil
}

// reachable names the backend in the error of a call that cannot reach it.
type reachable struct {
	*api.Client
	u *url.URL
}

func (r reachable) List(ctx context.Context) (*api.ListResponse, error) {
	resp, err := r.Client.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("backend at %s (is `warden serve` running?): %w", r.u.Redacted(), err)
	}
	return resp, nil
}
