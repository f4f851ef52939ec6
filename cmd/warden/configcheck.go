package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/server/listener"
)

// Validate checks the final configuration once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		bad("data_dir must be an absolute path, got %q", c.DataDir)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format must be text or json, got %q", c.Log.Format)
	}
	if host, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		bad("server.listen: %v", err)
	} else if !loopback(host) && !c.Server.TLS.On() && !c.Server.InsecurePlaintext {
		bad("server.listen %q is reachable from other hosts but TLS is off, so keys would cross the network in clear: set [server.tls] cert_file and key_file (`warden tls init` makes them), or server.insecure_plaintext = true behind a TLS-terminating proxy on this host", c.Server.Listen)
	}
	c.Server.TLS.Validate(bad)
	if allow, err := listener.ParseAllow("server.allow", c.Server.Allow); err != nil {
		bad("%v", err)
	} else if err := listener.Lockout(c.Server.Listen, allow); err != nil {
		bad("%v", err)
	}
	if _, err := listener.ParseAllow("admin.allow", c.Admin.Allow); err != nil {
		bad("%v", err)
	}
	if c.Server.MaxRPS < 0 || c.Server.AuthFailLimit < 0 || c.Server.AuthBan < 0 {
		bad("server.max_rps, server.auth_fail_limit and server.auth_ban must not be negative")
	}
	for _, o := range c.Server.CORSOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || strings.HasSuffix(o, "/") {
			bad("server.cors_origins: %q is not an origin (scheme://host[:port], no path)", o)
		}
	}
	if c.Server.MaxConnections < 1 || c.Server.MaxConnectionsPerIP < 1 || c.Server.MaxConnectionsPerIP > c.Server.MaxConnections {
		bad("server.max_connections (%d) and server.max_connections_per_ip (%d) must be at least 1, per IP at most the total", c.Server.MaxConnections, c.Server.MaxConnectionsPerIP)
	}
	if c.Server.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.MetricsListen); err != nil {
			bad("server.metrics_listen: %v", err)
		}
	}
	if c.Server.MaxBodyBytes < 1024 {
		bad("server.max_body_bytes must be at least 1024, got %d", c.Server.MaxBodyBytes)
	}
	if c.Server.MaxInflightBodyBytesPerIP < c.Server.MaxBodyBytes {
		bad("server.max_inflight_body_bytes_per_ip must be at least server.max_body_bytes (%d), got %d", c.Server.MaxBodyBytes, c.Server.MaxInflightBodyBytesPerIP)
	}
	if c.Server.MaxOutputTokens < 1 {
		bad("server.max_output_tokens must be at least 1, got %d", c.Server.MaxOutputTokens)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"server.request_timeout", c.Server.RequestTimeout},
		{"server.drain_timeout", c.Server.DrainTimeout},
		{"server.keepalive_interval", c.Server.KeepAliveInterval},
		{"server.write_timeout", c.Server.WriteTimeout},
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"runtime.start_timeout", c.Runtime.StartTimeout},
		{"keys.poll_interval", c.Keys.PollInterval},
		{"gpu.interval", c.GPU.Interval},
		{"scheduler.queue_timeout", c.Sched.QueueTimeout},
	} {
		if d.v <= 0 {
			bad("%s must be positive, got %s", d.name, d.v)
		}
	}
	for _, p := range c.Server.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				bad("server.trusted_proxies: %q is not an IP or CIDR", p)
			}
		}
	}
	if c.Runtime.OllamaURL != "" && c.Runtime.OllamaBin != "" {
		bad("runtime.ollama_url and runtime.ollama_bin exclude each other: attach to a running Ollama, or let Warden run one")
	}
	switch c.Runtime.Isolation {
	case "auto", "netns", "loopback":
	default:
		bad("runtime.isolation must be \"auto\", \"netns\" or \"loopback\", got %q", c.Runtime.Isolation)
	}
	if c.Runtime.User == "" {
		bad("runtime.user must name a user (\"root\" keeps the backend root)")
	}
	if c.Runtime.ModelsDir != "" && !filepath.IsAbs(c.Runtime.ModelsDir) {
		bad("runtime.models_dir must be an absolute path, got %q", c.Runtime.ModelsDir)
	}
	if c.Runtime.ContextLength < 256 {
		bad("runtime.context_length must be at least 256, got %d", c.Runtime.ContextLength)
	}
	if c.Runtime.Parallel < 1 || c.Runtime.Parallel > 64 {
		bad("runtime.parallel must be between 1 and 64, got %d", c.Runtime.Parallel)
	}
	if _, err := models.ParseAllowlist(c.Models.Allow); err != nil {
		bad("models.allow: %v", err)
	}
	if _, err := c.Models.pins(); err != nil {
		bad("models.pins: %v", err)
	}
	if c.Models.KeepVersions < 0 || c.Models.KeepVersions > 100 {
		bad("models.keep_versions must be 0 to 100, got %d", c.Models.KeepVersions)
	}
	if c.Runtime.Prefetch < 0 || c.Runtime.Prefetch > 64 {
		bad("runtime.prefetch must be between 0 and 64, got %d", c.Runtime.Prefetch)
	}
	for name, n := range c.Runtime.ModelSlots {
		if n < 1 || n > c.Runtime.Parallel {
			bad("runtime.model_slots: %q has %d slots, want 1 to runtime.parallel (%d)", name, n, c.Runtime.Parallel)
		}
		if name == "" {
			bad("runtime.model_slots: empty model name")
		}
	}
	if c.GPU.TempLimit < 0 || c.GPU.TempLimit > 150 || c.GPU.TempResume < 0 {
		bad("gpu.temp_limit must be between 0 (off) and 150, and gpu.temp_resume not negative")
	}
	if c.GPU.TempLimit > 0 && c.GPU.TempResume >= c.GPU.TempLimit {
		bad("gpu.temp_resume (%d) must be below gpu.temp_limit (%d)", c.GPU.TempResume, c.GPU.TempLimit)
	}
	if c.GPU.VRAMHeadroom < 0 {
		bad("gpu.vram_headroom must not be negative")
	}
	if c.Sched.MaxQueue < 1 || c.Sched.MaxQueuePerKey < 1 {
		bad("scheduler.max_queue and scheduler.max_queue_per_key must be at least 1")
	}
	if c.Runtime.MaxQueue < 1 {
		bad("runtime.max_queue must be at least 1, got %d", c.Runtime.MaxQueue)
	}
	if c.Keys.RotationMaxAge < 0 {
		bad("keys.rotation_max_age must not be negative")
	}
	for _, h := range []struct{ name, v string }{
		{"keys.user_header", c.Keys.UserHeader}, {"keys.user_email_header", c.Keys.UserEmailHeader}, {"keys.user_name_header", c.Keys.UserNameHeader},
	} {
		if !validHeaderName(h.v) {
			bad("%s must be an HTTP header name, got %q", h.name, h.v)
		}
	}
	if err := c.Limits.keys().Validate(); err != nil {
		bad("limits: %v", err)
	}
	c.Audit.Validate(bad)
	c.Safety.validate(bad)
	c.Alerts.Validate(c.Audit.Sinks, bad)
	c.Probe.validate(bad)
	c.Dataset.validate(bad)
	return errors.Join(errs...)
}

// loopback reports whether a listen host reaches only this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// pins returns [models.pins] by canonical name, each digest checked.
func (m ModelsConfig) pins() (map[string]string, error) {
	out := make(map[string]string, len(m.Pins))
	for name, d := range m.Pins {
		canon, ok := models.Canonical(name)
		if !ok {
			return nil, fmt.Errorf("%q is not a valid model name", name)
		}
		if !models.ValidManifestDigest(d) {
			return nil, fmt.Errorf("%s: %q is not a manifest digest (64 hex, \"sha256:\" optional)", name, d)
		}
		out[canon] = d
	}
	return out, nil
}
