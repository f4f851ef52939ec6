package ollama

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config describes the managed `ollama serve` child. Zero values of the
// tuning fields take the defaults given in their comments.
type Config struct {
	Bin           string        // path to the ollama binary
	DataDir       string        // warden's data dir: holds ollama.pid and the child's HOME
	ModelsDir     string        // OLLAMA_MODELS
	ContextLength int           // OLLAMA_CONTEXT_LENGTH (default 4096)
	NumParallel   int           // OLLAMA_NUM_PARALLEL (default 4)
	MaxQueue      int           // OLLAMA_MAX_QUEUE (default 512)
	KeepAlive     time.Duration // OLLAMA_KEEP_ALIVE (default 5m; negative keeps models loaded forever)
	ExtraEnv      []string      // extra OLLAMA_*=VALUE settings; see Validate
	// ParentEnv looks up the parent's environment (os.LookupEnv, wired in
	// cmd); only GPU selection variables are read through it. Nil passes
	// nothing through.
	ParentEnv    func(key string) (string, bool)
	Logger       *slog.Logger
	StartTimeout time.Duration // how long a child may take to answer health (default 60s)
	StopTimeout  time.Duration // SIGTERM to SIGKILL delay (default 5s)
	MinBackoff   time.Duration // first restart delay (default 250ms)
	MaxBackoff   time.Duration // restart delay cap (default 30s)
	// Isolation is IsolationNetns (the child in its own network
	// namespace, reached only by Warden; needs root), IsolationLoopback (a
	// host loopback port any local user can reach), or "" for netns when
	// Warden runs as root and loopback otherwise.
	Isolation string
	// User is who the child runs as when Warden runs as root (default
	// "warden-ollama", created as a system user if missing); "root" keeps
	// it root. Ignored when Warden is not root.
	User string
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.ContextLength <= 0 {
		c.ContextLength = 4096
	}
	if c.NumParallel <= 0 {
		c.NumParallel = 4
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 512
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 5 * time.Minute
	}
	if c.User == "" {
		c.User = DefaultUser
	}
	def(&c.StartTimeout, 60*time.Second)
	def(&c.StopTimeout, 5*time.Second)
	def(&c.MinBackoff, 250*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the settings Start needs: the three paths, and that every
// ExtraEnv entry is KEY=VALUE with an OLLAMA_ key warden does not own.
func (c Config) Validate() error {
	switch {
	case c.Bin == "":
		return errors.New("ollama binary path is empty")
	case c.DataDir == "":
		return errors.New("data dir is empty")
	case c.ModelsDir == "":
		return errors.New("models dir is empty")
	}
	seen := make(map[string]bool)
	for _, kv := range c.ExtraEnv {
		k, err := checkExtraEnv(kv)
		if err != nil {
			return err
		}
		if seen[k] {
			return fmt.Errorf("extra env %s: set twice", k)
		}
		seen[k] = true
	}
	return nil
}

// DefaultUser is the child's user when Warden runs as root: a dedicated
// system user, so the child shares no uid with anything else on the host.
const DefaultUser = "warden-ollama"

// childPath is the PATH the child gets: system directories only.
const childPath = "/usr/local/bin:/usr/bin:/bin"

// gpuEnv lists the parent's variables the child inherits when set: GPU
// selection and the library path GPU runtimes are found through.
var gpuEnv = []string{
	"CUDA_VISIBLE_DEVICES",
	"HIP_VISIBLE_DEVICES",
	"ROCR_VISIBLE_DEVICES",
	"GPU_DEVICE_ORDINAL",
	"LD_LIBRARY_PATH",
}

// reservedEnv lists OLLAMA_ keys ExtraEnv may not set: warden sets them
// itself (from Config fields), or they would open the child up (binding
// beyond loopback, CORS origins, cloud models, prompt logging).
var reservedEnv = map[string]bool{
	"OLLAMA_HOST":           true,
	"OLLAMA_DEBUG":          true,
	"OLLAMA_ORIGINS":        true,
	"OLLAMA_NO_CLOUD":       true,
	"OLLAMA_REMOTES":        true,
	"OLLAMA_MODELS":         true,
	"OLLAMA_CONTEXT_LENGTH": true,
	"OLLAMA_NUM_PARALLEL":   true,
	"OLLAMA_MAX_QUEUE":      true,
	"OLLAMA_KEEP_ALIVE":     true,
}

// checkExtraEnv checks one ExtraEnv entry and returns its key. Errors name
// the key, never the value.
func checkExtraEnv(kv string) (string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return "", fmt.Errorf("extra env %q: want KEY=VALUE", k)
	}
	rest, ok := strings.CutPrefix(k, "OLLAMA_")
	if !ok || rest == "" || strings.Trim(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
		return "", fmt.Errorf("extra env %q: only OLLAMA_* keys are allowed", k)
	}
	if reservedEnv[k] {
		return "", fmt.Errorf("extra env %s: set by warden, not allowed", k)
	}
	if strings.ContainsAny(v, "\x00\n") {
		return "", fmt.Errorf("extra env %s: value holds NUL or newline", k)
	}
	return k, nil
}

// childHome is the child's HOME: ollama keeps its key pair in ~/.ollama.
func childHome(cfg Config) string { return filepath.Join(cfg.DataDir, "ollama-home") }

// childEnv builds the child's whole environment from an allowlist; nothing
// else of the parent's environment (proxies, OLLAMA_DEBUG, secrets) reaches
// it. parent looks up the parent's variables (nil: none). Invalid ExtraEnv
// entries are dropped; Validate reports them.
func childEnv(cfg Config, port int, parent func(string) (string, bool)) []string {
	cfg = cfg.withDefaults()
	keepAlive := cfg.KeepAlive.String()
	if cfg.KeepAlive < 0 {
		keepAlive = "-1"
	}
	env := []string{
		"HOME=" + childHome(cfg),
		"PATH=" + childPath,
		"LANG=C.UTF-8",
		"GIN_MODE=release", // no route table dump at start
		"OLLAMA_HOST=127.0.0.1:" + strconv.Itoa(port),
		"OLLAMA_MODELS=" + cfg.ModelsDir,
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_CONTEXT_LENGTH=" + strconv.Itoa(cfg.ContextLength),
		"OLLAMA_NUM_PARALLEL=" + strconv.Itoa(cfg.NumParallel),
		"OLLAMA_MAX_QUEUE=" + strconv.Itoa(cfg.MaxQueue),
		"OLLAMA_KEEP_ALIVE=" + keepAlive,
	}
	if parent != nil {
		for _, k := range gpuEnv {
			if v, ok := parent(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	seen := make(map[string]bool)
	for _, kv := range cfg.ExtraEnv {
		if k, err := checkExtraEnv(kv); err == nil && !seen[k] {
			seen[k] = true
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns prev when 127.0.0.1:prev can be bound (a restarted child
// keeps its URL), otherwise a port the kernel picks.
func freePort(prev int) (int, error) {
	if prev > 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(prev))); err == nil {
			ln.Close()
			return prev, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// maxLogLine bounds one logged line of the child's output; the rest of a
// longer line is dropped.
const maxLogLine = 4096

// pipeLogs logs the child's output line by line until r ends.
func pipeLogs(log *slog.Logger, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogLine)
	skipping := false
	for {
		b, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if len(b) > 0 && !skipping {
			logLine(log, string(b), full)
		}
		skipping = full
		if err != nil && !full {
			return
		}
	}
}

func logLine(log *slog.Logger, line string, truncated bool) {
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return
	}
	if truncated {
		log.Log(context.Background(), lineLevel(line), "ollama", "line", line, "truncated", true)
		return
	}
	log.Log(context.Background(), lineLevel(line), "ollama", "line", line)
}

// lineLevel maps the level of one of ollama's slog text lines
// ("time=... level=WARN source=... msg=...") to ours. Its per-request GIN
// access lines are debug: warden logs every request itself.
func lineLevel(line string) slog.Level {
	if strings.HasPrefix(line, "[GIN]") {
		return slog.LevelDebug
	}
	head := line[:min(len(line), 80)]
	i := strings.Index(head, " level=")
	if i < 0 {
		return slog.LevelInfo
	}
	lvl, _, _ := strings.Cut(line[i+len(" level="):], " ")
	switch lvl {
	case "ERROR":
		return slog.LevelError
	case "WARN":
		return slog.LevelWarn
	case "DEBUG", "TRACE":
		return slog.LevelDebug
	default:
		return slog.LevelInfo
	}
}
