package store

import (
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
)

// TestBackupWhileWriting takes a backup while another goroutine writes and
// checks the copy is a consistent, openable database.
func TestBackupWhileWriting(t *testing.T) {
	ctx := t.Context()
	db, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Exec(`INSERT INTO t VALUES (?)`, i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	dest := filepath.Join(t.TempDir(), "copy.db")
	err = db.Backup(ctx, dest)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := sql.Open("sqlite3", "file:"+dest+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	var check string
	if err := cp.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	var v int
	if err := cp.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != schemaVersion() {
		t.Errorf("copy user_version = %d (%v), want %d", v, err, schemaVersion())
	}
	var n int
	if err := cp.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// The rows are contiguous from 0: a snapshot, not a torn copy.
	var maxN sql.NullInt64
	cp.QueryRow(`SELECT max(n) FROM t`).Scan(&maxN)
	if n > 0 && maxN.Int64 != int64(n-1) {
		t.Errorf("copy has %d rows but max %d", n, maxN.Int64)
	}
	if err := db.Backup(ctx, dest); err == nil {
		t.Errorf("backup over an existing file %s succeeded", dest)
	}
}
