package keys

import (
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// clock is an injected time source tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openDB opens the store in dir and closes it when the test ends.
func openDB(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a fresh database with a Manager on an injected clock.
type fixture struct {
	dir string
	db  *store.DB
	clk *clock
	m   *Manager
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	db := openDB(t, dir)
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

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
