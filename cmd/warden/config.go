package main

import (
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/tlsca"
	"github.com/warden-llm/warden/safety/trail"
	"github.com/warden-llm/warden/server"
	"github.com/warden-llm/warden/server/listener"
)

// Config is Warden's whole configuration. Every setting has a safe default,
// so `warden serve` runs with no file at all. Sources apply in order:
// defaults, the TOML file, WARDEN_* environment variables, then flags.
type Config struct {
	// DataDir holds the database, keys, pidfile and (by default) models.
	DataDir string        `toml:"data_dir"`
	Log     LogConfig     `toml:"log"`
	Server  ServerConfig  `toml:"server"`
	Runtime RuntimeConfig `toml:"runtime"`
	Keys    KeysConfig    `toml:"keys"`
	Limits  LimitsConfig  `toml:"limits"`
	Audit   AuditConfig   `toml:"audit"`
	GPU     GPUConfig     `toml:"gpu"`
	Sched   SchedConfig   `toml:"scheduler"`
	Safety  SafetyConfig  `toml:"safety"`
	Alerts  AlertsConfig  `toml:"alerts"`
	Admin   AdminConfig   `toml:"admin"`
	Models  ModelsConfig  `toml:"models"`
	Probe   ProbeConfig   `toml:"probe"`
	Dataset DatasetConfig `toml:"dataset"`

	// path is the file the configuration was read from ("" = none); serve
	// leaves it in the data dir so `warden audit status` reads the same.
	path string
}

// ModelsConfig governs which models may be pulled, imported and served.
type ModelsConfig struct {
	// Allow are glob patterns over canonical, registry-qualified model
	// names ("llama3.2:*", "hf.co/bartowski/*", "warden-demo"); empty
	// allows every model.
	Allow []string `toml:"allow"`
	// Pins pin models to manifest digests (model name → digest); a pin set
	// with `warden models pin` takes precedence.
	Pins map[string]string `toml:"pins"`
	// KeepVersions is how many previous versions of each name are kept for
	// rollback (0: none).
	KeepVersions int `toml:"keep_versions"`
}

// SchedConfig sets the fair queue in front of the backend's slots (each
// model gets runtime.parallel slots, runtime.model_slots overrides, and 1
// where Ollama forces one).
//
// A request held by GPU admission (too hot, or a model that does not fit in
// free VRAM) waits in this queue too and gets 503 with Retry-After at
// queue_timeout.
type SchedConfig struct {
	MaxQueue       int           `toml:"max_queue"`         // waiting requests in all → 503
	MaxQueuePerKey int           `toml:"max_queue_per_key"` // waiting requests of one key → 429
	QueueTimeout   time.Duration `toml:"queue_timeout"`     // longest wait for a slot → 503
}

// GPUConfig sets GPU telemetry (NVML; without a driver Warden says "no GPU"
// and runs on).
type GPUConfig struct {
	Interval time.Duration `toml:"interval"` // sampling period
	// VRAMHeadroom is GPU memory kept free on top of a model's estimated
	// need before its load is let through ("512MiB", "2GiB" or bytes).
	VRAMHeadroom ByteSize `toml:"vram_headroom"`
	// TempLimit pauses dispatch to the backend when any GPU reaches it
	// (°C; 0 disables); dispatch resumes once every GPU is at or below
	// TempResume.
	TempLimit  int `toml:"temp_limit"`
	TempResume int `toml:"temp_resume"`
}

// ByteSize is a size in bytes written as an integer or with a binary unit
// (KiB, MiB, GiB, TiB).
type ByteSize int64

// UnmarshalText parses "1GiB", "512MiB" or "1048576".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a size like 512MiB or 2GiB, got %q", text)
	}
	*b = ByteSize(n * mult)
	return nil
}

// KeysConfig sets how keys are checked.
type KeysConfig struct {
	// PollInterval is how soon a running server sees a key created,
	// rotated or revoked by the CLI.
	PollInterval time.Duration `toml:"poll_interval"`
	// RotationMaxAge marks keys "rotation due" in `keys list` (0: never).
	RotationMaxAge time.Duration `toml:"rotation_max_age"`
	// RequireUser refuses a delegate key's request that names no end user
	// (a key's own require_user wins).
	RequireUser bool `toml:"require_user"`
	// UserHeader, UserEmailHeader and UserNameHeader name the headers a
	// shared front end sends its signed-in user in (Open WebUI's by
	// default); only delegate keys' requests are read for them.
	UserHeader      string `toml:"user_header"`
	UserEmailHeader string `toml:"user_email_header"`
	UserNameHeader  string `toml:"user_name_header"`
}

// LimitsConfig holds the default limits of keys that set none (0: unlimited).
type LimitsConfig struct {
	RPM             int64 `toml:"rpm"`
	TPM             int64 `toml:"tpm"`
	TokensPerDay    int64 `toml:"tokens_per_day"`
	TokensPerMonth  int64 `toml:"tokens_per_month"`
	Concurrency     int64 `toml:"concurrency"`
	MaxOutputTokens int64 `toml:"max_output_tokens"`
	MaxOutputChars  int64 `toml:"max_output_chars"`
	MaxInputTokens  int64 `toml:"max_input_tokens"`
	// User holds the default per-user limits of delegate keys ([limits.user]).
	User UserLimitsConfig `toml:"user"`
}

// UserLimitsConfig holds the default limits of each end user of a delegate
// key that sets none (0: unlimited).
type UserLimitsConfig struct {
	RPM            int64 `toml:"rpm"`
	TPM            int64 `toml:"tpm"`
	TokensPerDay   int64 `toml:"tokens_per_day"`
	TokensPerMonth int64 `toml:"tokens_per_month"`
	Concurrency    int64 `toml:"concurrency"`
}

func (l LimitsConfig) keys() keys.Limits {
	return keys.Limits{
		RPM: l.RPM, TPM: l.TPM, TokensPerDay: l.TokensPerDay, TokensPerMonth: l.TokensPerMonth,
		Concurrency: l.Concurrency, MaxOutputTokens: l.MaxOutputTokens, MaxOutputChars: l.MaxOutputChars,
		MaxInputTokens: l.MaxInputTokens,
		UserRPM:        l.User.RPM, UserTPM: l.User.TPM, UserTokensPerDay: l.User.TokensPerDay,
		UserTokensPerMonth: l.User.TokensPerMonth, UserConcurrency: l.User.Concurrency,
	}
}

// LogConfig sets Warden's own log output (stderr).
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// ServerConfig sets the HTTP surface.
type ServerConfig struct {
	Listen            string        `toml:"listen"`
	MaxBodyBytes      int64         `toml:"max_body_bytes"`
	MaxOutputTokens   int           `toml:"max_output_tokens"`
	RequestTimeout    time.Duration `toml:"request_timeout"`
	DrainTimeout      time.Duration `toml:"drain_timeout"`
	KeepAliveInterval time.Duration `toml:"keepalive_interval"`
	WriteTimeout      time.Duration `toml:"write_timeout"`
	// ReadHeaderTimeout is how long a client has for a request's headers
	// (and the TLS handshake); then the connection is closed.
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	TrustedProxies    []string      `toml:"trusted_proxies"`
	// MetricsListen, if set, serves /metrics without a key on this
	// address too (keep it on loopback); the main listener serves it to
	// admin keys.
	MetricsListen string `toml:"metrics_listen"`
	// TLS serves the API over HTTPS; required on a non-loopback address.
	TLS TLSConfig `toml:"tls"`
	// InsecurePlaintext allows plain HTTP on a non-loopback address, for a
	// TLS-terminating reverse proxy on the same host.
	InsecurePlaintext bool `toml:"insecure_plaintext"`
	// Allow lists the client networks (CIDRs or addresses) that may
	// connect; others are closed at accept. Empty: every address the
	// listen address reaches.
	Allow []string `toml:"allow"`
	// MaxConnections and MaxConnectionsPerIP bound open connections.
	MaxConnections      int `toml:"max_connections"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxRPS sheds requests past this many a second with 503, before any
	// key lookup (0: off).
	MaxRPS float64 `toml:"max_rps"`
	// AuthFailLimit is how many failed authentications a minute one
	// address may make before it gets 429, then 403 for AuthBan (0: off).
	AuthFailLimit int           `toml:"auth_fail_limit"`
	AuthBan       time.Duration `toml:"auth_ban"`
	// CORSOrigins are the browser origins allowed to call the API.
	CORSOrigins []string `toml:"cors_origins"`
	// MaxInflightBodyBytesPerIP bounds the request bodies one client IP
	// may have in flight, counted before they are read.
	MaxInflightBodyBytesPerIP int64 `toml:"max_inflight_body_bytes_per_ip"`
	// RequirePreflight refuses to start while a `warden preflight` check
	// fails (as `serve --require-preflight` does).
	RequirePreflight bool `toml:"require_preflight"`
}

// AdminConfig is [admin].
type AdminConfig struct {
	// Allow lists the client networks /admin and /metrics answer.
	Allow []string `toml:"allow"`
}

// TLSConfig is [server.tls]: the listener's certificate settings.
type TLSConfig = tlsca.Config

// RuntimeConfig sets the model backend.
type RuntimeConfig struct {
	OllamaBin     string        `toml:"ollama_bin"`
	OllamaURL     string        `toml:"ollama_url"`
	ModelsDir     string        `toml:"models_dir"`
	ContextLength int           `toml:"context_length"`
	Parallel      int           `toml:"parallel"`
	Prefetch      int           `toml:"prefetch"` // requests per model beyond its slots, prepared by the backend while the batch runs
	MaxQueue      int           `toml:"max_queue"`
	KeepAlive     time.Duration `toml:"keep_alive"`
	StartTimeout  time.Duration `toml:"start_timeout"`
	DemoModel     bool          `toml:"demo_model"`
	// Isolation keeps other local users off the child's API: "netns" (its
	// own network namespace; needs root), "loopback" (a host loopback
	// port), "auto" (netns as root, else loopback).
	Isolation string `toml:"isolation"`
	// User is the child's user when Warden runs as root.
	User string `toml:"user"`
	// ModelSlots gives models fewer slots than Parallel (model name →
	// slots). Embedding-only models and the architectures Ollama runs with
	// one slot get 1 whatever is set here.
	ModelSlots map[string]int `toml:"model_slots"`
}

// defaultConfig returns the defaults; getenv resolves the data dir.
func defaultConfig(getenv func(string) string) Config {
	return Config{
		DataDir: defaultDataDir(getenv),
		Log:     LogConfig{Level: "info", Format: "text"},
		Server: ServerConfig{
			Listen:                    "127.0.0.1:8080",
			MaxBodyBytes:              1 << 20,
			MaxOutputTokens:           2048,
			RequestTimeout:            10 * time.Minute,
			DrainTimeout:              30 * time.Second,
			KeepAliveInterval:         5 * time.Second,
			TLS:                       TLSConfig{MinVersion: "1.3"},
			MaxConnections:            1024,
			MaxConnectionsPerIP:       64,
			WriteTimeout:              30 * time.Second,
			ReadHeaderTimeout:         10 * time.Second,
			MaxInflightBodyBytesPerIP: 8 << 20,
			MaxRPS:                    1000,
			AuthFailLimit:             20,
			AuthBan:                   10 * time.Minute,
		},
		Runtime: RuntimeConfig{
			ContextLength: 4096,
			Parallel:      4,
			Prefetch:      1,
			MaxQueue:      512,
			KeepAlive:     30 * time.Minute,
			StartTimeout:  2 * time.Minute,
			Isolation:     "auto",
			User:          ollama.DefaultUser,
			DemoModel:     true,
		},
		Admin:  AdminConfig{Allow: []string{"127.0.0.0/8", "::1"}},
		Models: ModelsConfig{KeepVersions: models.DefaultKeepVersions},
		Keys: KeysConfig{PollInterval: time.Second, RotationMaxAge: 90 * 24 * time.Hour,
			UserHeader: server.DefaultUserHeader, UserEmailHeader: server.DefaultUserEmailHeader, UserNameHeader: server.DefaultUserNameHeader},
		Audit:   trail.DefaultAudit(),
		GPU:     GPUConfig{Interval: time.Second, VRAMHeadroom: 512 << 20, TempLimit: 85, TempResume: 75},
		Sched:   SchedConfig{MaxQueue: 256, MaxQueuePerKey: 64, QueueTimeout: 2 * time.Minute},
		Safety:  defaultSafety(),
		Probe:   defaultProbe(),
		Dataset: defaultDataset(),
	}
}

// defaultDataDir is $WARDEN_DATA_DIR, else $XDG_DATA_HOME/warden, else
// ~/.local/share/warden: the same for every command, so the CLI and the
// server always meet.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("WARDEN_DATA_DIR"); d != "" {
		return d
	}
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "warden")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "share", "warden")
}

// loadConfig builds the configuration from defaults, the file at path (if
// any), and the environment. Flags are applied by the caller, then Validate.
func loadConfig(path string, getenv func(string) string) (Config, error) {
	cfg := defaultConfig(getenv)
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			cfg.path = abs
		}
		md, err := toml.DecodeFile(path, &cfg)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return cfg, fmt.Errorf("config %s: unknown settings: %s", path, strings.Join(keys, ", "))
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// applyEnv sets every field that has a WARDEN_* variable. The name is the
// TOML path in upper case joined by "_": server.listen is
// WARDEN_SERVER_LISTEN, runtime.ollama_bin WARDEN_RUNTIME_OLLAMA_BIN,
// data_dir WARDEN_DATA_DIR. Lists are comma-separated.
func applyEnv(cfg *Config, getenv func(string) string) error {
	return walkFields(reflect.ValueOf(cfg).Elem(), "WARDEN", func(name string, v reflect.Value) error {
		s := getenv(name)
		if s == "" {
			return nil
		}
		if err := setField(v, s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

func walkFields(v reflect.Value, prefix string, fn func(string, reflect.Value) error) error {
	t := v.Type()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			if err := walkFields(f, name, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(name, f); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

func setField(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	case v.Type() == reflect.TypeFor[map[string]int]():
		// "name=n,name=n"
		m := map[string]int{}
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if !ok || err != nil {
				return fmt.Errorf("want name=number pairs, got %q", p)
			}
			m[strings.TrimSpace(k)] = n
		}
		v.Set(reflect.ValueOf(m))
	case v.Type() == reflect.TypeFor[map[string]string]():
		// "name=value,name=value"
		m := map[string]string{}
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("want name=value pairs, got %q", p)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

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

// modelsDir is where the managed child keeps models.
func (c *Config) modelsDir() string {
	if c.Runtime.ModelsDir != "" {
		return c.Runtime.ModelsDir
	}
	return filepath.Join(c.DataDir, "models")
}

// The [audit] and [alerts] tables are the audit trail's own settings.
type (
	AuditConfig  = trail.AuditConfig
	AlertsConfig = trail.AlertsConfig
	SinkConfig   = trail.SinkConfig
)

// trailConfig is the audit trail's part of the configuration. The start
// record holds the digest of the whole configuration, with Version.
func (c Config) trailConfig(log *slog.Logger) trail.Config {
	return trail.Config{DataDir: c.DataDir, Audit: c.Audit, Alerts: c.Alerts, StartConfig: c, Version: Version, Logger: log, ConfigPath: c.path}
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
