package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/guard"
)

func TestGuardConfig(t *testing.T) {
	base, err := loadConfig("", envMap(map[string]string{"HOME": "/h", "WARDEN_SAFETY_GUARD_MODEL": "llama-guard3:1b"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("the guard model from the environment: %v", err)
	}
	gc, err := base.Safety.Guard.config()
	if err != nil || gc == nil || gc.Model != "llama-guard3:1b" || gc.Format != guard.LlamaGuard || !gc.Prompt || gc.Answer || gc.FailOpen || gc.Timeout != guard.DefaultTimeout {
		t.Fatalf("defaults: %+v, %v", gc, err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"on", func(c *Config) { c.Safety.Guard.On = []string{"prompt", "reply"} }, "safety.guard.on"},
		{"on empty", func(c *Config) { c.Safety.Guard.On = nil }, "prompt, answer or both"},
		{"failure", func(c *Config) { c.Safety.Guard.Failure = "ajar" }, "safety.guard.failure"},
		{"timeout", func(c *Config) { c.Safety.Guard.Timeout = 0 }, "safety.guard.timeout"},
		{"format", func(c *Config) { c.Safety.Guard.Format = "llamaguard" }, "safety.guard.format"},
		{"category name", func(c *Config) { c.Safety.Guard.Categories = map[string]string{"S1": "Violent Crimes"} }, "categories.S1"},
		{"safety off", func(c *Config) { c.Safety.Enabled = false }, "safety.enabled is false"},
		{"profile names an unknown category", func(c *Config) {
			c.Safety.Profiles = map[string]filter.ProfileConfig{"team": {Input: map[string]string{"wizardry": "flag"}}}
		}, "unknown category"},
	}
	for _, tt := range tests {
		c := base
		tt.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %s", tt.name, err, tt.want)
		}
	}

	// A profile may act on the guard's categories, mapped ones included,
	// only when a guard model is set.
	path := filepath.Join(t.TempDir(), "warden.toml")
	toml := `
[safety.guard]
model = "granite3-guardian:2b"
on = ["prompt", "answer"]
failure = "open"
timeout = "3s"
risk = "jailbreak"
[safety.guard.categories]
S6 = "medical_advice"
[safety.profiles.team]
input = { hate = "flag", medical_advice = "allow" }
`
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path, envMap(map[string]string{"HOME": "/h"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("a guard config with profiles: %v", err)
	}
	gc, err = c.Safety.Guard.config()
	if err != nil || gc.Format != guard.GraniteGuardian || !gc.FailOpen || !gc.Answer || gc.Timeout != 3*time.Second || gc.Category("S6") != "medical_advice" {
		t.Fatalf("file: %+v, %v", gc, err)
	}
	c.Safety.Guard.Model = ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "unknown category") {
		t.Errorf("a profile naming guard categories without a guard: %v", err)
	}
}
