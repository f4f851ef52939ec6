// Package store opens Warden's one SQLite database: keys, usage counters,
// audit rows and probe results live in the same file. Pragmas are set in
// the DSN so every pooled connection has them, writers take the lock at
// BEGIN (no failed lock upgrades), and versioned migrations run at open.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// FileName is the database's name inside the data dir.
const FileName = "warden.db"

// ErrNewerSchema reports a database written by a newer Warden.
var ErrNewerSchema = errors.New("database schema is newer than this warden")

// DB is the opened database. Its exported *sql.DB is safe for concurrent
// use; Queries counts the statements its connections run, so tests can prove
// a hot path does not touch SQLite.
type DB struct {
	*sql.DB
	path    string
	queries atomic.Int64
}

// stmtCacheSize is how many prepared statements each connection keeps
// (mattn/go-sqlite3 resets a statement before caching it, and prepares it
// again when the schema changed).
const stmtCacheSize = 64

// Options tune Open. The zero value is right for the server.
type Options struct {
	// BusyTimeout is how long a writer waits for another's lock.
	BusyTimeout time.Duration
	// SkipOwnerCheck disables the refusal to open a data dir owned by
	// another user (tests only).
	SkipOwnerCheck bool
	// Logger hears about permissions tightened at open; nil discards.
	Logger *slog.Logger
}

// Open opens (creating if needed) the database in dataDir and migrates it.
func Open(ctx context.Context, dataDir string, opts Options) (*DB, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if !opts.SkipOwnerCheck {
		if err := checkOwner(dataDir); err != nil {
			return nil, err
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := tightenPerms(dataDir, log); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, FileName)
	// Create the file 0600 before SQLite does (it would use the umask).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	f.Close()

	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(opts.BusyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_fk", "1")
	q.Set("_sync", "FULL")
	q.Set("_txlock", "immediate")
	// Each connection keeps its prepared statements: the hot paths (audit
	// appends, usage, keys) run the same few statements, and preparing one
	// costs more than running it.
	q.Set("_stmt_cache_size", fmt.Sprint(stmtCacheSize))
	dsn := "file:" + path + "?" + q.Encode()
	db := &DB{path: path}
	sqldb := sql.OpenDB(&connector{dsn: dsn, n: &db.queries, gate: newWriteGate(opts.BusyTimeout)})
	db.DB = sqldb
	if err := db.migrate(ctx); err != nil {
		sqldb.Close()
		return nil, err
	}
	return db, nil
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// Queries is the number of statements run on the database so far (each
// Exec or Query, and each execution of a prepared statement; not BEGIN or
// COMMIT).
func (db *DB) Queries() int64 { return db.queries.Load() }

// checkOwner refuses to work on a data dir that belongs to another user:
// root running an admin command on a user's dir would leave root-owned
// -wal/-shm files the server then cannot open.
func checkOwner(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(sys.Uid) != uid {
		return fmt.Errorf("data dir %s belongs to uid %d but this command runs as uid %d: run it as the owner (e.g. sudo -u <owner> warden ...) so the database files keep one owner", dir, sys.Uid, uid)
	}
	return nil
}

// InTx runs fn in one write transaction (the DSN's _txlock=immediate takes
// the lock at BEGIN): committed when fn returns nil, rolled back otherwise.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
