package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store"
)

// adminKeyFile, in the data dir, holds the admin key made on first run.
const adminKeyFile = "admin.key"

// firstRun creates one admin key when the database has none, so a fresh
// install is usable and still closed: everything under /v1 needs a key. The
// key goes to a 0600 file; the secret itself is printed only to a terminal,
// so it never lands in a service's log.
func firstRun(ctx context.Context, m *keys.Manager, cfg Config, stdout io.Writer) error {
	has, err := m.HasKeys(ctx)
	if err != nil || has {
		return err
	}
	k, token, err := m.Create(ctx, "system:first-run", keys.Spec{Name: "admin", Scopes: keys.AllScopes()})
	if err != nil {
		return fmt.Errorf("create first admin key: %w", err)
	}
	path := filepath.Join(cfg.DataDir, adminKeyFile)
	if err := writePrivate(path, token+"\n"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "No API keys yet: created admin key %s and wrote it to %s (mode 0600).\n", k.ID, path)
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(stdout, "\n  %s\n\n", token)
	}
	fmt.Fprintf(stdout, "Try it:\n  curl -H \"Authorization: Bearer $(cat %s)\" http://%s/v1/models\n", path, cfg.Server.Listen)
	fmt.Fprintf(stdout, "The admin key can use every model and the admin API; give people their own: warden keys create --name NAME\n")
	return nil
}

// writePrivate writes a file only its owner can read, atomically.
func writePrivate(path, content string) error {
	if err := store.WriteFileAtomic(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
