package main

import (
	"fmt"
	"log/slog"
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

var durationType = reflect.TypeFor[time.Duration]()

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
