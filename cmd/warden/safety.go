package main

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/warden-llm/warden/safety/filter"
)

// SafetyConfig is the [safety] table: the inline filters on prompts and
// answers, and the profiles keys select with --policy.
type SafetyConfig struct {
	// Enabled turns the filters on (default true).
	Enabled bool `toml:"enabled"`
	// PhoneRegions are the regions whose national phone formats count.
	PhoneRegions []string `toml:"phone_regions"`
	// PrivateIPs makes private and loopback addresses ip findings too;
	// they are normal in a homelab, so by default only public ones are.
	PrivateIPs bool `toml:"private_ips"`
	// Blocklists maps a category (e.g. Llama Guard's "S10") to a term file.
	// Files are re-read on SIGHUP and POST /admin/safety/reload.
	Blocklists map[string]string `toml:"blocklists"`
	// Profiles are named policies; "default" applies to keys without one.
	Profiles map[string]filter.ProfileConfig `toml:"profiles"`
	// Canary places an HMAC canary in system prompts to catch answers that
	// leak them (default true). The key is data_dir/canary.key.
	Canary bool `toml:"canary"`
	// CanaryMinRun is how many bytes of a system prompt an answer must
	// repeat verbatim to count as a leak.
	CanaryMinRun int `toml:"canary_min_run"`
	// RepeatWindow is how many recent answers the repeat check remembers.
	RepeatWindow int `toml:"repeat_window"`
	// Guard is the optional guard model (guardmodel.go).
	Guard GuardConfig `toml:"guard"`
}

func defaultSafety() SafetyConfig {
	return SafetyConfig{Enabled: true, Canary: true, CanaryMinRun: 64, RepeatWindow: 1024, Guard: defaultGuard()}
}

func (s SafetyConfig) detectorOptions() filter.DetectorOptions {
	return filter.DetectorOptions{PhoneRegions: s.PhoneRegions, PrivateIPs: s.PrivateIPs, Blocklists: s.Blocklists}
}

func (s SafetyConfig) validate(bad func(string, ...any)) {
	if s.CanaryMinRun < 16 {
		bad("safety.canary_min_run must be at least 16, got %d", s.CanaryMinRun)
	}
	if s.RepeatWindow < 0 {
		bad("safety.repeat_window must not be negative")
	}
	for cat, file := range s.Blocklists {
		if !filepath.IsAbs(file) {
			bad("safety.blocklists.%s: %q must be an absolute path", cat, file)
		}
	}
	if _, err := filter.BuildProfiles(s.Profiles, s.detectorOptions().BlocklistCategories(), s.Guard.categories()...); err != nil {
		bad("%v", err)
	}
	if gc, err := s.Guard.config(); err != nil {
		bad("%v", err)
	} else if gc != nil && !s.Enabled {
		bad("safety.guard.model is set but safety.enabled is false: the guard's verdicts are acted on by the safety profiles")
	}
}

// newFilter builds the safety engine from the config, or nil when the
// filters are off. The canary key is created on first use.
func newFilter(cfg *Config) (*filter.Engine, error) {
	if !cfg.Safety.Enabled {
		return nil, nil
	}
	opts := cfg.Safety.detectorOptions()
	profiles, err := filter.BuildProfiles(cfg.Safety.Profiles, opts.BlocklistCategories(), cfg.Safety.Guard.categories()...)
	if err != nil {
		return nil, err
	}
	fc := filter.Config{
		Profiles:     profiles,
		Detectors:    filter.Detectors(opts),
		CanaryMinRun: cfg.Safety.CanaryMinRun,
		RepeatWindow: cfg.Safety.RepeatWindow,
	}
	if cfg.Safety.RepeatWindow == 0 {
		fc.RepeatWindow = -1
	}
	if cfg.Safety.Canary {
		if fc.Secret, err = filter.CanaryKey(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	return filter.New(fc)
}

// checkProfile refuses a key profile the config does not define, so that a
// typo is caught when the key is made rather than at its first request.
func (s SafetyConfig) checkProfile(name string) error {
	if name == "" {
		return nil
	}
	profiles, err := filter.BuildProfiles(s.Profiles, s.detectorOptions().BlocklistCategories(), s.Guard.categories()...)
	if err != nil {
		return err
	}
	if _, ok := profiles[name]; !ok {
		return fmt.Errorf("safety profile %q is not defined in the config (defined: %s)", name, strings.Join(slices.Sorted(maps.Keys(profiles)), ", "))
	}
	return nil
}
