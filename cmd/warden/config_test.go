package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultsAreSafeAndValid(t *testing.T) {
	cfg, err := loadConfig("", envMap(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" {
		t.Errorf("listen = %q, want loopback only", cfg.Server.Listen)
	}
	if cfg.DataDir != "/home/u/.local/share/warden" {
		t.Errorf("data dir = %q", cfg.DataDir)
	}
	if cfg.Runtime.ContextLength != 4096 || cfg.Runtime.Parallel != 4 || cfg.Server.MaxOutputTokens != 2048 ||
		cfg.Server.MaxBodyBytes != 1<<20 || cfg.Server.RequestTimeout != 10*time.Minute {
		t.Errorf("defaults changed: %+v", cfg)
	}
}

func TestDataDirOrder(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HOME": "/h"}, "/h/.local/share/warden"},
		{map[string]string{"HOME": "/h", "XDG_DATA_HOME": "/x"}, "/x/warden"},
		{map[string]string{"HOME": "/h", "XDG_DATA_HOME": "/x", "WARDEN_DATA_DIR": "/w"}, "/w"},
	}
	for _, tt := range tests {
		if got := defaultDataDir(envMap(tt.env)); got != tt.want {
			t.Errorf("env %v: data dir %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.toml")
	conf := `
data_dir = "/srv/warden"
[server]
listen = "127.0.0.1:9000"
request_timeout = "90s"
trusted_proxies = ["10.0.0.1"]
[runtime]
parallel = 2
context_length = 8192
[[audit.sink]]
name = "hook"
type = "webhook"
url = "https://logs.example/hook"
headers = { Authorization = "Bearer x" }
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, envMap(map[string]string{
		"HOME":                          "/h",
		"WARDEN_RUNTIME_PARALLEL":       "8",
		"WARDEN_SERVER_TRUSTED_PROXIES": "10.0.0.2, 10.0.0.3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/warden" || cfg.Server.Listen != "127.0.0.1:9000" || cfg.Server.RequestTimeout != 90*time.Second {
		t.Errorf("file settings not applied: %+v", cfg)
	}
	if cfg.Runtime.ContextLength != 8192 {
		t.Errorf("context length = %d, want 8192 from the file", cfg.Runtime.ContextLength)
	}
	if len(cfg.Audit.Sinks) != 1 || cfg.Audit.Sinks[0].Headers["Authorization"] != "Bearer x" {
		t.Errorf("audit sinks = %+v", cfg.Audit.Sinks)
	}
	if cfg.Runtime.Parallel != 8 {
		t.Errorf("parallel = %d, want the environment's 8 over the file's 2", cfg.Runtime.Parallel)
	}
	if strings.Join(cfg.Server.TrustedProxies, ",") != "10.0.0.2,10.0.0.3" {
		t.Errorf("trusted proxies = %v", cfg.Server.TrustedProxies)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := loadConfig(write("[server]\nlisten_addr = \"x\"\n"), envMap(nil)); err == nil || !strings.Contains(err.Error(), "server.listen_addr") {
		t.Errorf("unknown key: %v, want an error naming it", err)
	}
	if _, err := loadConfig(write("[server\n"), envMap(nil)); err == nil {
		t.Error("malformed TOML accepted")
	}
	if _, err := loadConfig("", envMap(map[string]string{"WARDEN_RUNTIME_PARALLEL": "many"})); err == nil || !strings.Contains(err.Error(), "WARDEN_RUNTIME_PARALLEL") {
		t.Errorf("bad env value: %v, want an error naming the variable", err)
	}

	base, _ := loadConfig("", envMap(map[string]string{"HOME": "/h"}))
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"relative data dir", func(c *Config) { c.DataDir = "data" }, "data_dir"},
		{"listen", func(c *Config) { c.Server.Listen = "8080" }, "server.listen"},
		{"parallel", func(c *Config) { c.Runtime.Parallel = 0 }, "runtime.parallel"},
		{"prefetch", func(c *Config) { c.Runtime.Prefetch = -1 }, "runtime.prefetch"},
		{"context", func(c *Config) { c.Runtime.ContextLength = 10 }, "runtime.context_length"},
		{"output cap", func(c *Config) { c.Server.MaxOutputTokens = 0 }, "server.max_output_tokens"},
		{"timeout", func(c *Config) { c.Server.RequestTimeout = 0 }, "server.request_timeout"},
		{"header timeout", func(c *Config) { c.Server.ReadHeaderTimeout = 0 }, "server.read_header_timeout"},
		{"proxy", func(c *Config) { c.Server.TrustedProxies = []string{"nope"} }, "trusted_proxies"},
		{"url and bin", func(c *Config) { c.Runtime.OllamaURL = "http://x:1"; c.Runtime.OllamaBin = "/x" }, "exclude"},
		{"isolation", func(c *Config) { c.Runtime.Isolation = "chroot" }, "runtime.isolation"},
		{"no user", func(c *Config) { c.Runtime.User = "" }, "runtime.user"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"store text", func(c *Config) { c.Audit.StoreText = "some" }, "audit.store_text"},
		{"retention", func(c *Config) { c.Audit.RetentionDays = 0 }, "audit.retention_days"},
		{"outbox cap", func(c *Config) { c.Audit.OutboxMaxBytes = 100 }, "audit.outbox_max_bytes"},
		{"outbox full", func(c *Config) { c.Audit.OutboxFull = "shrug" }, "audit.outbox_full"},
		{"commit delay negative", func(c *Config) { c.Audit.CommitDelay = -time.Millisecond }, "audit.commit_delay"},
		{"commit delay too long", func(c *Config) { c.Audit.CommitDelay = time.Second }, "audit.commit_delay"},
		{"sink type", func(c *Config) { c.Audit.Sinks = []SinkConfig{{Name: "x", Type: "carrier-pigeon"}} }, "audit.sink[0]"},
		{"sink names", func(c *Config) {
			c.Audit.Sinks = []SinkConfig{{Name: "x", Type: "webhook", URL: "http://a/"}, {Name: "x", Type: "webhook", URL: "http://b/"}}
		}, "used twice"},
		{"negative limit", func(c *Config) { c.Limits.RPM = -1 }, "limits"},
		{"plaintext on the LAN", func(c *Config) { c.Server.Listen = "0.0.0.0:8080" }, "TLS is off"},
		{"tls key without cert", func(c *Config) { c.Server.TLS.KeyFile = "/k.pem" }, "go together"},
		{"tls relative path", func(c *Config) { c.Server.TLS.CertFile, c.Server.TLS.KeyFile = "c.pem", "/k.pem" }, "server.tls.cert_file"},
		{"tls version", func(c *Config) { c.Server.TLS.MinVersion = "1.1" }, "server.tls.min_version"},
		{"client CA without TLS", func(c *Config) { c.Server.TLS.ClientCAFile = "/ca.pem" }, "client_ca_file"},
		{"allow CIDR", func(c *Config) { c.Server.Allow = []string{"10.0.0.0/33"} }, "server.allow"},
		{"allow locks out loopback", func(c *Config) { c.Server.Allow = []string{"192.168.1.0/24"} }, "locks out"},
		{"connection ceilings", func(c *Config) { c.Server.MaxConnectionsPerIP = 2000 }, "server.max_connections"},
	}
	// Allowed: TLS on the LAN, plaintext behind a local proxy, an allowlist
	// that includes the listen address's network.
	for _, ok := range []func(*Config){
		func(c *Config) {
			c.Server.Listen, c.Server.TLS.CertFile, c.Server.TLS.KeyFile = "0.0.0.0:8443", "/c.pem", "/k.pem"
		},
		func(c *Config) { c.Server.Listen, c.Server.InsecurePlaintext = "0.0.0.0:8080", true },
		func(c *Config) { c.Server.Allow = []string{"127.0.0.1", "192.168.1.0/24"} },
	} {
		c := base
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("a safe setting refused: %v", err)
		}
	}
	for _, tt := range tests {
		c := base
		tt.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %s", tt.name, err, tt.want)
		}
	}
}

// envNames lists every variable applyEnv reads.
func envNames() []string {
	var names []string
	var cfg Config
	_ = walkFields(reflect.ValueOf(&cfg).Elem(), "WARDEN", func(name string, _ reflect.Value) error {
		names = append(names, name)
		return nil
	})
	return names
}

func TestEnvNamesCoverEverySetting(t *testing.T) {
	names := strings.Join(envNames(), " ")
	for _, want := range []string{"WARDEN_DATA_DIR", "WARDEN_SERVER_LISTEN", "WARDEN_RUNTIME_OLLAMA_BIN", "WARDEN_RUNTIME_MODELS_DIR", "WARDEN_LOG_LEVEL"} {
		if !strings.Contains(names, want) {
			t.Errorf("%s missing from %s", want, names)
		}
	}
}

func TestSchedulerAndGPUSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.toml")
	conf := `
[runtime]
parallel = 4
[runtime.model_slots]
"llama3:8b" = 2
[gpu]
vram_headroom = "2GiB"
temp_limit = 88
temp_resume = 80
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, envMap(map[string]string{"HOME": "/h"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.GPU.VRAMHeadroom != 2<<30 || cfg.GPU.TempLimit != 88 || cfg.GPU.TempResume != 80 || cfg.Runtime.ModelSlots["llama3:8b"] != 2 {
		t.Errorf("settings not applied: gpu %+v slots %v", cfg.GPU, cfg.Runtime.ModelSlots)
	}
	cfg, err = loadConfig("", envMap(map[string]string{"HOME": "/h",
		"WARDEN_GPU_VRAM_HEADROOM": "768MiB", "WARDEN_RUNTIME_MODEL_SLOTS": "a=1, b:7b=3"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GPU.VRAMHeadroom != 768<<20 || cfg.Runtime.ModelSlots["a"] != 1 || cfg.Runtime.ModelSlots["b:7b"] != 3 {
		t.Errorf("env not applied: %+v %v", cfg.GPU, cfg.Runtime.ModelSlots)
	}
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"slots above parallel", func(c *Config) { c.Runtime.ModelSlots = map[string]int{"m": 5} }, "runtime.model_slots"},
		{"zero slots", func(c *Config) { c.Runtime.ModelSlots = map[string]int{"m": 0} }, "runtime.model_slots"},
		{"resume not below limit", func(c *Config) { c.GPU.TempResume = 90 }, "gpu.temp_resume"},
	} {
		c := defaultConfig(envMap(map[string]string{"HOME": "/h"}))
		tt.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want an error about %s", tt.name, err, tt.want)
		}
	}
	if _, err := loadConfig("", envMap(map[string]string{"WARDEN_GPU_VRAM_HEADROOM": "lots"})); err == nil {
		t.Error("vram_headroom = lots accepted")
	}
}
