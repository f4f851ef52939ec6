package main

import (
	"time"
)

// ProbeConfig is the [probe] table: serve's scheduled probe runs and the
// defaults of `warden probe run`.
type ProbeConfig struct {
	// Schedule is how often serve runs the suite (0: never; "24h": daily).
	Schedule time.Duration `toml:"schedule"`
	// AlertThreshold is the rise of a failure rate between two runs of a
	// model (0.1 = ten points) beyond which serve fires the alert sinks.
	AlertThreshold float64 `toml:"alert_threshold"`
	// Suite is a built-in suite name or a JSONL file.
	Suite string `toml:"suite"`
	// Model is the model probed; "" is the first one the probe key lists.
	Model string `toml:"model"`
	// Seed is sent with every probe (answers are at temperature 0).
	Seed int64 `toml:"seed"`
	// MaxTokens caps each answer.
	MaxTokens int `toml:"max_tokens"`
	// Timeout bounds each probe; a probe past it is recorded as an error.
	Timeout time.Duration `toml:"timeout"`
}

func defaultProbe() ProbeConfig {
	return ProbeConfig{AlertThreshold: 0.1, Suite: "all", Seed: 1, MaxTokens: 128, Timeout: 2 * time.Minute}
}

func (p ProbeConfig) validate(bad func(string, ...any)) {
	if p.Schedule < 0 {
		bad("probe.schedule must not be negative, got %s", p.Schedule)
	}
	if p.Schedule > 0 && p.Schedule < time.Minute {
		bad("probe.schedule must be at least 1m (or 0 for never), got %s", p.Schedule)
	}
	if p.AlertThreshold < 0 || p.AlertThreshold > 1 {
		bad("probe.alert_threshold must be between 0 and 1, got %g", p.AlertThreshold)
	}
	if p.MaxTokens < 1 {
		bad("probe.max_tokens must be at least 1, got %d", p.MaxTokens)
	}
	if p.Timeout <= 0 {
		bad("probe.timeout must be positive, got %s", p.Timeout)
	}
	if p.Suite == "" {
		bad("probe.suite must name a built-in suite or a file")
	}
}

// DatasetConfig is the [dataset] table: the thresholds of `warden dataset
// check` (flags override them; a negative or zero ratio turns a check off).
type DatasetConfig struct {
	MaxDuplicateRate     float64 `toml:"max_duplicate_rate"`      // exact duplicates / records
	MaxNearDuplicateRate float64 `toml:"max_near_duplicate_rate"` // near duplicates / records
	MaxSensitiveRate     float64 `toml:"max_sensitive_rate"`      // records with PII or secrets / records
	MaxLabelRatio        float64 `toml:"max_label_ratio"`         // most / least frequent label (0: off)
	MinLanguageShare     float64 `toml:"min_language_share"`      // share of the main language (0: off)
}

func defaultDataset() DatasetConfig {
	return DatasetConfig{MaxDuplicateRate: 0.01, MaxNearDuplicateRate: 0.05, MaxSensitiveRate: 0, MaxLabelRatio: 10, MinLanguageShare: 0}
}

func (d DatasetConfig) validate(bad func(string, ...any)) {
	for _, f := range []struct {
		name string
		v    float64
	}{{"max_duplicate_rate", d.MaxDuplicateRate}, {"max_near_duplicate_rate", d.MaxNearDuplicateRate},
		{"max_sensitive_rate", d.MaxSensitiveRate}, {"min_language_share", d.MinLanguageShare}} {
		if f.v < 0 || f.v > 1 {
			bad("dataset.%s must be between 0 and 1, got %g", f.name, f.v)
		}
	}
	if d.MaxLabelRatio < 0 {
		bad("dataset.max_label_ratio must not be negative, got %g", d.MaxLabelRatio)
	}
}
