// Package storetest gives tests what most of Warden's packages need: a real
// database in a temp dir and a clock the test moves by hand.
package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Open opens a fresh database in a temp dir, closed when the test ends.
func Open(t testing.TB) *store.DB {
	t.Helper()
	return OpenDir(t, t.TempDir())
}

// OpenDir opens (creating if needed) the database in dir, closed when the
// test ends; closing it earlier is harmless.
func OpenDir(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), dir, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// T0 is the instant a Clock made by NewClock(T0) starts at; any fixed time
// would do.
var T0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// Clock is a clock a test moves by hand, safe for concurrent use. Its
// timers (After) fire when Advance reaches them.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t (backwards too) without firing timers.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock forward by d and fires the timers now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if !t.stopped && !c.now.Before(t.at) {
			t.stopped = true
			t.c <- c.now
		}
	}
}

// After returns a channel that receives the time once Advance reaches d from
// now, and a stop function reporting whether it stopped the timer before it
// fired (like time.Timer.Stop).
func (c *Clock) After(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	return t.c, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Armed is how many timers wait to fire.
func (c *Clock) Armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}
