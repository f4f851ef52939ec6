// Command warden turns a GPU box into a safe, shared LLM appliance: it runs
// Ollama as a supervised child bound to loopback and serves an
// OpenAI-compatible API in front of it.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/trail"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
		os.Exit(1)
	}
}

// globals are the flags every command accepts, and what they resolve to.
type globals struct {
	configPath string
	dataDir    string
	getenv     func(string) string
	stdout     io.Writer
	stderr     io.Writer
}

// config loads the configuration and applies the global flags.
func (g *globals) config() (Config, error) {
	path := g.configPath
	if path == "" {
		path = g.getenv("WARDEN_CONFIG")
	}
	return g.configAt(path)
}

// configAt loads the configuration at path ("" = defaults and environment)
// and applies the global flags.
func (g *globals) configAt(path string) (Config, error) {
	cfg, err := loadConfig(path, g.getenv)
	if err != nil {
		return cfg, err
	}
	if g.dataDir != "" {
		cfg.DataDir = g.dataDir
	}
	return cfg, nil
}

// configSource names the configuration config() reads, as serve resolves
// it: --config, else $WARDEN_CONFIG, else the built-in defaults.
func (g *globals) configSource() string {
	switch {
	case g.configPath != "":
		return g.configPath
	case g.getenv("WARDEN_CONFIG") != "":
		return g.getenv("WARDEN_CONFIG") + " ($WARDEN_CONFIG)"
	}
	return "the built-in defaults (no --config, no $WARDEN_CONFIG)"
}

// servedConfig is cfg, unless neither --config nor $WARDEN_CONFIG names one
// and `warden serve` recorded the file it last started with on cfg's data
// dir: then that file's configuration, and its path (else "").
func (g *globals) servedConfig(cfg Config) (Config, string, error) {
	if g.configPath != "" || g.getenv("WARDEN_CONFIG") != "" {
		return cfg, "", nil
	}
	p := trail.ServeConfigPath(cfg.DataDir)
	if p == "" {
		return cfg, "", nil
	}
	served, err := g.configAt(p)
	if err != nil {
		return cfg, "", fmt.Errorf("the configuration warden serve last started with: %w", err)
	}
	return served, p, nil
}

// withDB is the RunE of a command that starts by opening the data dir's
// database: run gets it and the configuration, and it is closed when run
// returns.
func (g *globals) withDB(run func(cmd *cobra.Command, args []string, db *store.DB, cfg Config) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		db, cfg, err := g.openDB(cmd.Context())
		if err != nil {
			return err
		}
		defer db.Close()
		return run(cmd, args, db, cfg)
	}
}

// openDB opens the data dir's database for an admin command, which is safe
// while `warden serve` runs: writers take SQLite's lock and wait for it.
func (g *globals) openDB(ctx context.Context) (*store.DB, Config, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, cfg, err
	}
	db, err := store.Open(ctx, cfg.DataDir, store.Options{Logger: g.logger(cfg.Log)})
	return db, cfg, err
}

func (g *globals) logger(cfg LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	g := &globals{getenv: getenv, stdout: stdout, stderr: stderr}
	gin.SetMode(gin.ReleaseMode)

	root := &cobra.Command{
		Use:   "warden",
		Short: "A safe, shared door to the LLMs on your GPU box",
		Long: `Warden runs Ollama as a supervised child bound to loopback and is the only
door to it: an OpenAI-compatible API (/v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models) that any OpenAI SDK can use with only the base URL
and key changed.

Every command reads the same configuration (--config, WARDEN_* variables) and
the same data dir, so admin commands work while the server runs.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "TOML config file (default: $WARDEN_CONFIG, else built-in defaults)")
	pf.StringVar(&g.dataDir, "data-dir", "", "data directory (default: $WARDEN_DATA_DIR, $XDG_DATA_HOME/warden or ~/.local/share/warden)")

	root.AddCommand(newServeCmd(g), newKeysCmd(g), newAuditCmd(g), newModelsCmd(g), newGPUCmd(g), newBackupCmd(g), newScanCmd(g), newTLSCmd(g), newPreflightCmd(g), newProbeCmd(g), newDatasetCmd(g), newVersionCmd(g))
	return root
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Warden's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(g.stdout, "warden %s\n", Version)
			return err
		},
	}
}
