package keys

import (
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func newClock() *storetest.Clock {
	return storetest.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
}

// fixture is a fresh database with a Manager on an injected clock.
type fixture struct {
	dir string
	db  *store.DB
	clk *storetest.Clock
	m   *Manager
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	clk := newClock()
	return &fixture{dir: dir, db: db, clk: clk, m: &Manager{DB: db, Now: clk.Now}}
}

// create makes a key or fails the test.
func (f *fixture) create(t testing.TB, s Spec) (Key, string) {
	t.Helper()
	if s.Name == "" {
		s.Name = "test"
	}
	k, tok, err := f.m.Create(t.Context(), "os:tester", s)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return k, tok
}

// rows counts the rows of table.
func (f *fixture) rows(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// maxVersion is what a poller would read.
func (f *fixture) maxVersion(t testing.TB) int64 {
	t.Helper()
	var v int64
	if err := f.db.QueryRow("SELECT COALESCE(MAX(version), 0) FROM keys").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// startCache starts a Cache over db and closes it when the test ends.
func startCache(t testing.TB, db *store.DB, interval time.Duration, now func() time.Time) *Cache {
	t.Helper()
	c := NewCache(db, interval, now)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
