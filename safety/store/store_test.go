package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesPrivateFileAndMigrates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(dir)
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", dst.Mode().Perm())
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != schemaVersion() {
		t.Errorf("user_version = %d (%v), want %d", v, err, schemaVersion())
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	// Every pooled connection has the pragmas: hold one, ask on another.
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var fk int
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys on a second connection = %d (%v), want 1", fk, err)
	}

	// Reopening is idempotent.
	db2, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(t.Context(), dir, Options{})
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "upgrade warden") {
		t.Errorf("newer schema: %v, want ErrNewerSchema telling to upgrade", err)
	}
}

func TestOpenRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "damaged or not a Warden database") {
		t.Errorf("garbage file: %v, want a clear error", err)
	}
}

func TestOpenRefusesOtherOwner(t *testing.T) {
	dir := t.TempDir()
	// Tests run as root; give the dir to another uid.
	if err := os.Chown(dir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "run it as the owner") {
		t.Errorf("foreign data dir: %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !os.IsNotExist(err) {
		t.Errorf("refusal left a database file behind: %v", err)
	}
}

// schemaVersion is the version this binary writes.
func schemaVersion() int { return len(migrations) }

// TestQueriesCountsEveryStatement: the counting connection sees every
// statement, however it is run, with no call by the code that runs it.
func TestQueriesCountsEveryStatement(t *testing.T) {
	db, err := Open(t.Context(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	step := func(name string, want int64, run func() error) {
		t.Helper()
		before := db.Queries()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := db.Queries() - before; got != want {
			t.Errorf("%s ran %d statements by the count, want %d", name, got, want)
		}
	}
	step("Exec", 1, func() error {
		_, err := db.ExecContext(ctx, `CREATE TABLE t (n INTEGER)`)
		return err
	})
	step("QueryRow", 1, func() error {
		var n int
		return db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
	})
	step("a transaction of two inserts", 4, func() error { // BEGIN, 2 × INSERT, COMMIT
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i := range 2 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?)`, i); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	step("a prepared statement run three times", 3, func() error {
		s, err := db.PrepareContext(ctx, `INSERT INTO t VALUES (?)`)
		if err != nil {
			return err
		}
		defer s.Close()
		for i := range 3 {
			if _, err := s.ExecContext(ctx, i); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestCachedStatementsSeeOtherWriters: a connection's cached statements
// hold no read snapshot between uses (another process's write is seen the
// next time) and are prepared again after the schema changed.
func TestCachedStatementsSeeOtherWriters(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	db, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := db.Conn(ctx) // one connection: its statement cache is reused
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	countPins := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM model_pins WHERE at >= ?`, 0).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for want := range 3 {
		if got := countPins(); got != want {
			t.Fatalf("the cached count sees %d pins, want %d", got, want)
		}
		if _, err := other.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, 'd', 1, 'os:t')`, strings.Repeat("m", want+1)); err != nil {
			t.Fatal(err)
		}
	}
	const all = `SELECT * FROM model_pins ORDER BY name LIMIT 1`
	var name, note string
	if err := conn.QueryRowContext(ctx, all).Scan(&name, new(string), new(int64), new(string)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, `ALTER TABLE model_pins ADD COLUMN note TEXT NOT NULL DEFAULT 'n'`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, all).Scan(&name, new(string), new(int64), new(string), &note); err != nil || note != "n" {
		t.Fatalf("the cached SELECT * after a column was added: note %q, %v", note, err)
	}
}
