package store

import (
	"testing"
)

// TestCheckAndOutboxBytes: a sound database passes both checks, and the
// outbox's byte count follows inserts and deletes through its triggers.
func TestCheckAndOutboxBytes(t *testing.T) {
	db, err := Open(t.Context(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, full := range []bool{false, true} {
		if err := db.Check(t.Context(), full); err != nil {
			t.Errorf("Check(full=%v) on a new database: %v", full, err)
		}
	}
	bytes := func() int64 {
		var n int64
		if err := db.QueryRow(`SELECT bytes FROM outbox_state WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := db.Exec(`INSERT INTO outbox (topic, at, body) VALUES ('audit', 1, '{"a":1}'), ('audit', 2, '{"bb":22}')`); err != nil {
		t.Fatal(err)
	}
	if got := bytes(); got != 7+9 {
		t.Errorf("bytes after two inserts = %d, want 16", got)
	}
	if _, err := db.Exec(`DELETE FROM outbox WHERE at = 1`); err != nil {
		t.Fatal(err)
	}
	if got := bytes(); got != 9 {
		t.Errorf("bytes after a delete = %d, want 9", got)
	}
}
