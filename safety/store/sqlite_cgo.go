//go:build cgo

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/mattn/go-sqlite3"
)

// errBusy is what a writer gets after waiting out the busy timeout in the
// write gate: SQLite's own SQLITE_BUSY ("database is locked").
var errBusy error = sqlite3.Error{Code: sqlite3.ErrBusy, ExtendedCode: sqlite3.ErrBusy.Extend(0)}

// friendly turns SQLite's errors about a damaged file into a clear message.
func friendly(path string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
		return fmt.Errorf("database %s is damaged or not a Warden database (%v): restore it from a backup, or move it aside to start empty", path, err)
	}
	return err
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
