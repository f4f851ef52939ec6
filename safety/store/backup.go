package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Backup copies the database to dest with SQLite's online backup API: a
// consistent snapshot, safe while the server writes. dest must not exist;
// the copy is written beside it and renamed into place, so a failed backup
// leaves nothing behind.
func (db *DB) Backup(ctx context.Context, dest string) error {
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("backup: %s already exists", dest)
	}
	tmp := dest + ".partial"
	_ = os.Remove(tmp)
	if err := db.backupTo(ctx, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
