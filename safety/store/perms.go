package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// dirTraverse is the one permission bit beyond the owner's a data dir may
// keep: group execute, which lets the backend's dedicated user (whose group
// Warden gives the dir when it runs as root) reach its own subdirectories by
// name without listing or reading anything else.
const dirTraverse os.FileMode = 0o010

// tightenPerms makes dataDir private to its owner: the dir becomes 0700
// (keeping a group execute bit that stands alone, see dirTraverse) and every regular file directly
// in it 0600. Each change is logged with the mode found, so an operator
// learns that the dir was open; nothing is logged when it was private.
func tightenPerms(dataDir string) error {
	st, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if m := st.Mode().Perm(); m&^(0o700|dirTraverse) != 0 {
		want := m & 0o700
		if m&0o070 == dirTraverse {
			want |= dirTraverse
		}
		if err := os.Chmod(dataDir, want); err != nil {
			return fmt.Errorf("tighten data dir %s: %w", dataDir, err)
		}
		slog.Default().Warn("data dir was open to other users; tightened", "path", dataDir, "was", m.String(), "now", want.String())
	}
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed in the meantime
		}
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			p := filepath.Join(dataDir, e.Name())
			if err := os.Chmod(p, m&0o700); err != nil {
				return fmt.Errorf("tighten %s: %w", p, err)
			}
			slog.Default().Warn("data file was open to other users; tightened", "path", p, "was", m.String(), "now", (m & 0o700).String())
		}
	}
	return nil
}
