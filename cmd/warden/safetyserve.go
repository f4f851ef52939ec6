package main

import (
	"context"
	"log/slog"

	"github.com/warden-llm/warden/safety/filter"
)

// startSafety builds the safety filter (nil when it is off) and, until ctx
// ends, re-reads its blocklist files on SIGHUP. A reload that fails keeps
// the lists in force and logs why.
func startSafety(ctx context.Context, cfg *Config, log *slog.Logger) (*filter.Engine, error) {
	e, err := newFilter(cfg)
	if e == nil || err != nil {
		if err == nil {
			log.Warn("safety filters are off (safety.enabled = false)")
		}
		return e, err
	}
	onHangup(ctx, func() {
		if err := e.Reload(); err != nil {
			log.Error("safety reload on SIGHUP: old blocklists stay in force", "err", err)
		} else {
			log.Info("safety blocklists reloaded on SIGHUP")
		}
	})
	return e, nil
}
