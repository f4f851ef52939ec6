package quota

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// newClock returns a clock standing at s (RFC 3339).
func newClock(s string) *storetest.Clock {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return storetest.NewClock(t)
}

// newLimiter opens a database in a temp dir and a Limiter on it, both
// closed at the end of the test.
func newLimiter(t testing.TB, c *storetest.Clock) (*Limiter, *store.DB) {
	t.Helper()
	db := storetest.OpenDir(t, t.TempDir())
	l := New(db, Config{Now: c.Now})
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("close limiter: %v", err)
		}
		db.Close()
	})
	return l, db
}

// admit admits or fails the test.
func admit(t testing.TB, l *Limiter, key string, lim Limits, prompt, maxTokens int64, stated bool) *Reservation {
	t.Helper()
	r, err := l.Admit(context.Background(), key, lim, prompt, maxTokens, stated)
	if err != nil {
		t.Fatalf("Admit(%d, %d, stated=%v): %v", prompt, maxTokens, stated, err)
	}
	return r
}

// refused admits and wants a LimitError for limit.
func refused(t testing.TB, l *Limiter, key string, lim Limits, prompt, maxTokens int64, stated bool, limit string) *LimitError {
	t.Helper()
	r, err := l.Admit(context.Background(), key, lim, prompt, maxTokens, stated)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Admit(%d, %d, stated=%v) = %v, %v; want LimitError %s", prompt, maxTokens, stated, r, err, limit)
	}
	if le.Limit != limit {
		t.Fatalf("Admit(%d, %d, stated=%v) refused for %s (%v), want %s", prompt, maxTokens, stated, le.Limit, le, limit)
	}
	return le
}

func settle(t testing.TB, r *Reservation, prompt, output int64) {
	t.Helper()
	if err := r.Settle(context.Background(), prompt, output); err != nil {
		t.Fatalf("Settle: %v", err)
	}
}

// dbUsage reads one usage row (0 when absent).
func dbUsage(t testing.TB, db *store.DB, key, period, bucket string) int64 {
	t.Helper()
	var n int64
	err := db.QueryRow("SELECT COALESCE(SUM(tokens), 0) FROM usage WHERE key_id = ? AND period = ? AND bucket = ?", key, period, bucket).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
