package store

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWriteGate: while a transaction is open, another writer of the same
// process waits in the gate (durably blocked, not in SQLite's sleeping
// busy handler), runs as soon as the transaction commits, and fails as
// SQLite would (SQLITE_BUSY) when it waited the whole busy timeout.
func TestWriteGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		db, err := Open(ctx, t.TempDir(), Options{BusyTimeout: time.Minute, SkipOwnerCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		insert := func(name string) error {
			_, err := db.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, 'd', 1, 'os:t')`, name)
			return err
		}

		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- insert("a") }()
		synctest.Wait() // without the gate this waits out SQLite's busy handler
		select {
		case err := <-done:
			t.Fatalf("a second writer ran while a transaction was open: %v", err)
		default:
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("the waiting writer, once the transaction committed: %v", err)
		}

		tx, err = db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- insert("b") }()
		time.Sleep(time.Minute + time.Second)
		if err := <-done; !errors.Is(err, errBusy) || err.Error() != "database is locked" {
			t.Errorf("a writer past the busy timeout: %v, want SQLITE_BUSY", err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if err := insert("c"); err != nil {
			t.Errorf("the gate after a rollback: %v", err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM model_pins`).Scan(&n); err != nil || n != 2 {
			t.Errorf("pins written: %d (%v), want 2 (a and c)", n, err)
		}
	})
}
