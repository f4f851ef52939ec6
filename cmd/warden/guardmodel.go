package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/guard"
)

// GuardConfig is the [safety.guard] table: an optional guard model the
// supervised backend runs on prompts and answers.
type GuardConfig struct {
	// Model is the guard model (e.g. "llama-guard3:1b"); empty: no guard.
	Model string `toml:"model"`
	// On names what the guard judges: "prompt", "answer" or both.
	On []string `toml:"on"`
	// Timeout bounds one guard call, its wait for a slot included.
	Timeout time.Duration `toml:"timeout"`
	// Failure is what a call without a verdict does: "closed" refuses the
	// text, "open" lets it pass, flagged.
	Failure string `toml:"failure"`
	// Format is the model's output format: "llama-guard",
	// "granite-guardian" or "shieldgemma"; empty: guessed from the name.
	Format string `toml:"format"`
	// Risk is the risk a yes/no guard is asked about (Granite Guardian's
	// system message) and the code of its "Yes".
	Risk string `toml:"risk"`
	// Categories maps the guard's codes to Warden categories, over the
	// defaults (S1 violent_crimes … S14 code_interpreter_abuse).
	Categories map[string]string `toml:"categories"`
}

func defaultGuard() GuardConfig {
	return GuardConfig{On: []string{"prompt"}, Timeout: guard.DefaultTimeout, Failure: "closed"}
}

// config checks the table and returns the guard's config, or nil when no
// model is set.
func (g GuardConfig) config() (*guard.Config, error) {
	if g.Model == "" {
		return nil, nil
	}
	for _, on := range g.On {
		if on != "prompt" && on != "answer" {
			return nil, fmt.Errorf("safety.guard.on: %q is not prompt or answer", on)
		}
	}
	if g.Failure != "closed" && g.Failure != "open" {
		return nil, fmt.Errorf("safety.guard.failure must be closed or open, got %q", g.Failure)
	}
	if g.Timeout <= 0 {
		return nil, fmt.Errorf("safety.guard.timeout must be positive, got %s", g.Timeout)
	}
	f, err := guard.ParseFormat(g.Format, g.Model)
	if err != nil {
		return nil, fmt.Errorf("safety.guard.format: %w", err)
	}
	c := &guard.Config{
		Model:      g.Model,
		Format:     f,
		Prompt:     slices.Contains(g.On, "prompt"),
		Answer:     slices.Contains(g.On, "answer"),
		Timeout:    g.Timeout,
		FailOpen:   g.Failure == "open",
		Risk:       g.Risk,
		Categories: g.Categories,
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("safety.%w", err)
	}
	return c, nil
}

// categories are the categories profiles may name for the guard: none
// when it is off.
func (g GuardConfig) categories() []string {
	c, err := g.config()
	if c == nil || err != nil {
		return nil
	}
	return c.AllCategories()
}

// startGuard returns the guard model's config (nil: none) and says at
// start whether the backend has the model: without it every guard call
// fails, and the failure mode decides.
func startGuard(ctx context.Context, cfg *Config, client *ollama.Client, log *slog.Logger) (*guard.Config, error) {
	gc, err := cfg.Safety.Guard.config()
	if gc == nil || err != nil {
		return gc, err
	}
	log.Info("safety guard model on", "model", gc.Model, "format", gc.Format, "prompt", gc.Prompt, "answer", gc.Answer,
		"failure", cfg.Safety.Guard.Failure, "timeout", gc.Timeout)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Show(sctx, &api.ShowRequest{Model: gc.Model}); err != nil {
		log.Warn("safety guard model is not in the backend: every guard call will fail and safety.guard.failure applies; pull or import it",
			"model", gc.Model, "failure", cfg.Safety.Guard.Failure, "err", err)
	}
	return gc, nil
}
