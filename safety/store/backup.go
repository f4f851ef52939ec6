package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mattn/go-sqlite3"
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

func (db *DB) backupTo(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	dst, err := sql.Open("sqlite3", "file:"+path+"?_sync=FULL")
	if err != nil {
		return err
	}
	defer dst.Close()
	dconn, err := dst.Conn(ctx)
	if err != nil {
		return err
	}
	defer dconn.Close()
	sconn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer sconn.Close()
	return dconn.Raw(func(d any) error {
		dc, ok := d.(*sqlite3.SQLiteConn)
		if !ok {
			return errors.New("destination is not a sqlite3 connection")
		}
		return sconn.Raw(func(s any) error {
			if w, ok := s.(*countingConn); ok {
				db.queries.Add(1) // the backup reads the whole database
				s = w.Unwrap()
			}
			sc, ok := s.(*sqlite3.SQLiteConn)
			if !ok {
				return errors.New("source is not a sqlite3 connection")
			}
			b, err := dc.Backup("main", sc, "main")
			if err != nil {
				return err
			}
			for {
				done, err := b.Step(256)
				if err != nil {
					b.Finish()
					return err
				}
				if done {
					break
				}
				if ctx.Err() != nil {
					b.Finish()
					return ctx.Err()
				}
			}
			return b.Finish()
		})
	})
}
