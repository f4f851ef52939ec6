package quota

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestFailedWriteIsLoggedCountedAndRetried: a usage write the database
// refuses (a trigger stands in for a full disk, deterministically) is
// logged and counted, and its tokens are written by a retry once the
// database accepts writes again.
func TestFailedWriteIsLoggedCountedAndRetried(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	t.Cleanup(func() { db.Close() })
	var logs testlog.Buffer
	l := New(db, Config{Now: newClock(start).Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER usage_full BEFORE INSERT ON usage
		BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	if n := l.WriteFailures(); n != 0 {
		t.Fatalf("WriteFailures = %d before any write, want 0", n)
	}

	r := admit(t, l, "k", Limits{TokensPerDay: 100}, 10, 10, true)
	if err := r.Settle(ctx, 10, 10); err == nil || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("Settle on a full database = %v, want the write's error", err)
	}
	if n := l.WriteFailures(); n < 1 {
		t.Errorf("WriteFailures = %d after a failed write, want ≥ 1", n)
	}
	if got := logs.String(); !strings.Contains(got, "save usage failed; retrying") || !strings.Contains(got, "disk is full") {
		t.Errorf("log = %q, want the failed write with its error", got)
	}

	if _, err := db.ExecContext(ctx, `DROP TRIGGER usage_full`); err != nil {
		t.Fatal(err)
	}
	saved := func() (day, month int64) {
		rows, err := db.QueryContext(ctx, `SELECT period, tokens FROM usage WHERE key_id = 'k'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var p string
			var n int64
			if err := rows.Scan(&p, &n); err != nil {
				t.Fatal(err)
			}
			if p == "day" {
				day = n
			} else {
				month = n
			}
		}
		return day, month
	}
	testwait.For(t, "usage rows day=20 and month=20 written by a retry", func() bool {
		day, month := saved()
		return day == 20 && month == 20
	})
	if err := l.Close(ctx); err != nil {
		t.Errorf("Close = %v, want nothing left unsaved", err)
	}
}

// TestUsageWritesGather: charges nobody waits for (the server settles
// with a context that is already done) are gathered for gatherFor and
// written by one statement; a charge whose caller waits is written at
// once.
func TestUsageWritesGather(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := storetest.OpenDir(t, t.TempDir())
		l := New(db, Config{Now: newClock(start).Now})
		lim := Limits{TokensPerDay: 1e6, TokensPerMonth: 1e7}
		var rs []*Reservation
		for range 5 {
			rs = append(rs, admit(t, l, "k", lim, 10, 10, true))
		}
		done, cancel := context.WithCancel(context.Background())
		cancel()
		before := db.Queries()
		for _, r := range rs {
			if err := r.Settle(done, 10, 5); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := db.Queries() - before; got != 0 {
			t.Fatalf("%d statements before gatherFor, want 0", got)
		}
		time.Sleep(gatherFor)
		synctest.Wait()
		if got := db.Queries() - before; got != 1 {
			t.Fatalf("%d statements after gatherFor, want 1", got)
		}
		if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 5*15 {
			t.Fatalf("day usage %d, want %d", got, 5*15)
		}
		before = db.Queries()
		settle(t, admit(t, l, "k", lim, 10, 10, true), 10, 5) // waits for its write: no time passes
		if got := db.Queries() - before; got != 1 {
			t.Fatalf("%d statements for a charge someone waits for, want 1", got)
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		db.Close()
	})
}
