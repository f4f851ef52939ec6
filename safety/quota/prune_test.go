package quota

import (
	"context"
	"testing"
	"time"
)

// TestPruneUsage: usage written by the limiter over two months (a key's
// and an end user's) is pruned to the periods that had not ended at the
// cutoff; today's and this month's rows, which quotas read, stay, and a
// fresh limiter still refuses by them.
func TestPruneUsage(t *testing.T) {
	c := newClock("2026-10-30T12:00:00Z")
	l, db := newLimiter(t, c)
	ctx := context.Background()
	spend := func() {
		t.Helper()
		settle(t, admit(t, l, "k", Limits{}, 10, 0, true), 10, 0)
		r, err := l.AdmitUser(ctx, "k", Limits{}, "alice", Limits{}, 10, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		settle(t, r, 10, 0)
	}
	for _, day := range []string{"2026-10-30", "2026-11-02", "2026-11-20", "2026-11-21"} {
		at, _ := time.Parse(time.DateOnly, day)
		c.Set(at.Add(12 * time.Hour))
		spend()
	}
	if err := l.Close(ctx); err != nil { // flushes the writer
		t.Fatal(err)
	}

	n, err := PruneUsage(ctx, db, c.Now().AddDate(0, 0, -1)) // cutoff 2026-11-20 12:00
	if err != nil {
		t.Fatal(err)
	}
	// Gone: the days 10-30 and 11-02 and the month 2026-10, of the key
	// and of alice: six rows.
	if n != 6 {
		t.Errorf("pruned %d rows, want 6", n)
	}
	// The key's rows count alice's tokens too (10 of its 20 a day).
	for _, want := range []struct {
		period, bucket string
		tokens         int64
	}{
		{"day", "2026-10-30", 0}, {"day", "2026-11-02", 0}, {"month", "2026-10", 0},
		{"day", "2026-11-20", 10}, {"day", "2026-11-21", 10}, {"month", "2026-11", 30},
	} {
		if got := dbUsage(t, db, "k", want.period, want.bucket); got != 2*want.tokens {
			t.Errorf("key usage %s %s = %d, want %d", want.period, want.bucket, got, 2*want.tokens)
		}
		if got := dbUserUsage(t, l, "alice", want.period, want.bucket); got != want.tokens {
			t.Errorf("alice's usage %s %s = %d, want %d", want.period, want.bucket, got, want.tokens)
		}
	}

	l2 := New(db, Config{Now: c.Now})
	defer l2.Close(ctx)
	refused(t, l2, "k", Limits{TokensPerMonth: 65}, 10, 0, true, LimitTokensPerMonth)
	if _, err := l2.AdmitUser(ctx, "k", Limits{}, "alice", Limits{TokensPerDay: 15}, 10, 0, true); err == nil {
		t.Error("after pruning, alice's 10 tokens today no longer count")
	}

	if n, err := PruneUsage(ctx, db, c.Now().AddDate(0, 0, -1)); err != nil || n != 0 {
		t.Errorf("a second prune deleted %d rows (%v), want 0", n, err)
	}
}
