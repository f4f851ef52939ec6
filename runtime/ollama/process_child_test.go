package ollama

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestChildEnv(t *testing.T) {
	parent := map[string]string{
		"OLLAMA_DEBUG":          "1",
		"OLLAMA_HOST":           "0.0.0.0:11434",
		"OLLAMA_ORIGINS":        "*",
		"HTTPS_PROXY":           "http://proxy:3128",
		"HTTP_PROXY":            "http://proxy:3128",
		"NO_PROXY":              "localhost",
		"AWS_SECRET_ACCESS_KEY": "secret",
		"HOME":                  "/root",
		"PATH":                  "/home/u/bin:/usr/bin",
		"CUDA_VISIBLE_DEVICES":  "0,1",
		"LD_LIBRARY_PATH":       "/usr/local/cuda/lib64",
	}
	lookup := func(k string) (string, bool) { v, ok := parent[k]; return v, ok }
	base := Config{Bin: "/x/ollama", DataDir: "/d", ModelsDir: "/m"}
	withExtra := base
	withExtra.ExtraEnv = []string{"OLLAMA_FLASH_ATTENTION=1", "OLLAMA_DEBUG=1", "OLLAMA_HOST=0.0.0.0:1", "PATH=/evil", "OLLAMA_FLASH_ATTENTION=0"}
	tuned := base
	tuned.ContextLength, tuned.NumParallel, tuned.MaxQueue, tuned.KeepAlive = 8192, 2, 16, -1

	defaults := []string{
		"HOME=/d/ollama-home",
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"GIN_MODE=release",
		"OLLAMA_HOST=127.0.0.1:4321",
		"OLLAMA_MODELS=/m",
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_CONTEXT_LENGTH=4096",
		"OLLAMA_NUM_PARALLEL=4",
		"OLLAMA_MAX_QUEUE=512",
		"OLLAMA_KEEP_ALIVE=5m0s",
	}
	tests := []struct {
		name   string
		cfg    Config
		parent func(string) (string, bool)
		want   []string
	}{
		{"no parent", base, nil, defaults},
		{"parent leaks only gpu vars", base, lookup,
			append(slices.Clone(defaults), "CUDA_VISIBLE_DEVICES=0,1", "LD_LIBRARY_PATH=/usr/local/cuda/lib64")},
		{"extra env filtered", withExtra, nil, append(slices.Clone(defaults), "OLLAMA_FLASH_ATTENTION=1")},
		{"tuned", tuned, nil, []string{
			"HOME=/d/ollama-home", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "GIN_MODE=release",
			"OLLAMA_HOST=127.0.0.1:4321", "OLLAMA_MODELS=/m", "OLLAMA_NO_CLOUD=1",
			"OLLAMA_CONTEXT_LENGTH=8192", "OLLAMA_NUM_PARALLEL=2", "OLLAMA_MAX_QUEUE=16", "OLLAMA_KEEP_ALIVE=-1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := childEnv(tt.cfg, 4321, tt.parent)
			if !slices.Equal(got, tt.want) {
				t.Errorf("childEnv:\n got  %q\n want %q", got, tt.want)
			}
			for _, kv := range got {
				k, _, _ := strings.Cut(kv, "=")
				switch k {
				case "OLLAMA_DEBUG", "OLLAMA_ORIGINS", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "AWS_SECRET_ACCESS_KEY":
					t.Errorf("childEnv passes %s", k)
				}
			}
		})
	}
}

func TestExtraEnvValidate(t *testing.T) {
	base := Config{Bin: "/x/ollama", DataDir: "/d", ModelsDir: "/m"}
	tests := []struct {
		name    string
		extra   []string
		wantErr string
	}{
		{"none", nil, ""},
		{"allowed", []string{"OLLAMA_FLASH_ATTENTION=1", "OLLAMA_KV_CACHE_TYPE=q8_0", "OLLAMA_MAX_LOADED_MODELS=1"}, ""},
		{"empty value", []string{"OLLAMA_NOPRUNE="}, ""},
		{"debug", []string{"OLLAMA_DEBUG=1"}, "OLLAMA_DEBUG: set by warden"},
		{"host", []string{"OLLAMA_HOST=0.0.0.0"}, "OLLAMA_HOST: set by warden"},
		{"origins", []string{"OLLAMA_ORIGINS=*"}, "OLLAMA_ORIGINS: set by warden"},
		{"no cloud", []string{"OLLAMA_NO_CLOUD=0"}, "OLLAMA_NO_CLOUD: set by warden"},
		{"not ollama", []string{"HTTPS_PROXY=http://p"}, "only OLLAMA_* keys"},
		{"lowercase", []string{"OLLAMA_x=1"}, "only OLLAMA_* keys"},
		{"bare prefix", []string{"OLLAMA_=1"}, "only OLLAMA_* keys"},
		{"no equals", []string{"OLLAMA_FLASH_ATTENTION"}, "want KEY=VALUE"},
		{"newline", []string{"OLLAMA_FLASH_ATTENTION=1\nX=2"}, "NUL or newline"},
		{"twice", []string{"OLLAMA_NOPRUNE=1", "OLLAMA_NOPRUNE=0"}, "set twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.ExtraEnv = tt.extra
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSupervisorLineLevel(t *testing.T) {
	tests := []struct {
		line string
		want slog.Level
	}{
		{`time=2026-01-02T03:04:05.000Z level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:1"`, slog.LevelInfo},
		{`time=2026-01-02T03:04:05.000Z level=WARN source=x.go:1 msg=w`, slog.LevelWarn},
		{`time=2026-01-02T03:04:05.000Z level=ERROR source=x.go:1 msg=e`, slog.LevelError},
		{`time=2026-01-02T03:04:05.000Z level=DEBUG source=x.go:1 msg=d`, slog.LevelDebug},
		{`[GIN] 2026/01/02 - 03:04:05 | 200 | 1ms | 127.0.0.1 | GET "/api/version"`, slog.LevelDebug},
		{`llama_model_loader: loaded meta data`, slog.LevelInfo},
		{`time=2026-01-02T03:04:05.000Z level=INFO source=x.go:1 msg="` + strings.Repeat("x", 80) + ` level=ERROR"`, slog.LevelInfo},
	}
	for _, tt := range tests {
		if got := lineLevel(tt.line); got != tt.want {
			t.Errorf("lineLevel(%.40q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestSupervisorPipeLogs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	long := strings.Repeat("a", 3*maxLogLine)
	pipeLogs(log, strings.NewReader("first\r\n\n"+long+"\nlast without newline"))
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 3 {
		t.Fatalf("logged %d records, want 3:\n%s", n, out)
	}
	for _, want := range []string{"line=first\n", "truncated=true", "line=\"last without newline\""} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if len(out) > 2*maxLogLine {
		t.Errorf("logged %d bytes for a %d-byte line; want it bounded", len(out), len(long))
	}
}
