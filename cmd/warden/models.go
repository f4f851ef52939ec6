package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/store"
)

// backendFile, in the data dir, holds the URL of the backend the running
// server uses, so admin commands reach the same Ollama.
const backendFile = "backend.url"

func writeBackendURL(dataDir string, u *url.URL) error {
	if err := store.WriteFileAtomic(filepath.Join(dataDir, backendFile), []byte(u.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", backendFile, err)
	}
	return nil
}

// backendURL finds the backend: runtime.ollama_url if configured, else the
// one the running server recorded in the data dir.
func backendURL(cfg Config) (*url.URL, error) {
	raw := cfg.Runtime.OllamaURL
	if raw == "" {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, backendFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no backend found in %s: is `warden serve` running with this data dir?", cfg.DataDir)
		}
		if err != nil {
			return nil, err
		}
		raw = strings.TrimSpace(string(b))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad backend url %q", raw)
	}
	return u, nil
}

func newModelsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Inspect the backend's models",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the models the backend holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			u, err := backendURL(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			tr := ollama.NewTransport()
			if cfg.Runtime.OllamaURL == "" { // the server's child: maybe in its own network namespace
				dial, closeNS := ollama.ChildDialer(cfg.DataDir)
				defer closeNS()
				if dial != nil {
					tr.DialContext = dial
				}
			}
			client := ollama.NewClient(func() *url.URL { return u }, &http.Client{Transport: tr})
			resp, err := client.List(ctx)
			if err != nil {
				return fmt.Errorf("list models at %s (is `warden serve` running?): %w", u.Redacted(), err)
			}
			if asJSON {
				type row struct {
					Name     string    `json:"name"`
					Digest   string    `json:"digest"`
					Size     int64     `json:"size"`
					Modified time.Time `json:"modified_at"`
				}
				rows := make([]row, 0, len(resp.Models))
				for _, m := range resp.Models {
					rows = append(rows, row{m.Name, m.Digest, m.Size, m.ModifiedAt})
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tSIZE\tMODIFIED")
			for _, m := range resp.Models {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.Name, shortDigest(m.Digest), m.Size, m.ModifiedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
