package keys

import (
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestCacheSeesChangesFromAnotherProcess: revoke and rotate made through a
// second store.Open of the same dir (what the CLI does) reach a running
// Cache by its poll, without a restart.
func TestCacheSeesChangesFromAnotherProcess(t *testing.T) {
	f := newFixture(t)
	a, tokA := f.create(t, Spec{Name: "a"})
	b, tokB := f.create(t, Spec{Name: "b"})
	c := startCache(t, f.db, 10*time.Millisecond, nil) // real clock, real poller

	cli := &Manager{DB: storetest.OpenDir(t, f.dir)}
	ctx := t.Context()
	if err := cli.Revoke(ctx, "os:cli", a.ID); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the revoke to reach the cache", func() bool {
		_, err := c.Authenticate(tokA)
		return errors.Is(err, ErrInvalidKey)
	})

	_, tokB2, err := cli.Rotate(ctx, "os:cli", b.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the rotated secret to be accepted", func() bool {
		_, err := c.Authenticate(tokB2)
		return err == nil
	})
	if _, err := c.Authenticate(tokB); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("old secret after a grace-0 rotate = %v, want ErrInvalidKey", err)
	}

	if err := cli.Update(ctx, "os:cli", b.ID, Change{Limits: &Limits{RPM: 7}}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the new limits to reach the cache", func() bool {
		p, err := c.Authenticate(tokB2)
		return err == nil && p.Limits.RPM == 7
	})
}

// TestRotationWithGraceHasNoDowntime keeps using the old secret while
// another process rotates: no failure before the grace ends, only failures
// after it.
func TestRotationWithGraceHasNoDowntime(t *testing.T) {
	f := newFixture(t)
	k, oldTok := f.create(t, Spec{})
	c := startCache(t, f.db, 5*time.Millisecond, f.clk.Now)
	cli := &Manager{DB: storetest.OpenDir(t, f.dir), Now: f.clk.Now}

	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if _, err := c.Authenticate(oldTok); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	_, newTok, err := cli.Rotate(t.Context(), "os:cli", k.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the new secret to be accepted", func() bool {
		_, err := c.Authenticate(newTok)
		return err == nil
	})
	before := calls.Load()
	testwait.For(t, "more requests with the old secret", func() bool { return calls.Load() > before+1000 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests with the old secret failed during the grace", n, calls.Load())
	}

	f.clk.Advance(time.Hour)
	if _, err := c.Authenticate(oldTok); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("old secret after the grace = %v, want ErrInvalidKey", err)
	}
	if _, err := c.Authenticate(newTok); err != nil {
		t.Errorf("new secret after the grace = %v", err)
	}
}

// TestAuthenticateRunsNoQueries is the hot-path proof: a cached key costs
// no SQLite statement and no allocation.
func TestAuthenticateRunsNoQueries(t *testing.T) {
	f := newFixture(t)
	_, tok := f.create(t, Spec{})
	c := startCache(t, f.db, time.Hour, f.clk.Now) // poller isolated
	before := f.db.Queries()
	for i := range 10_000 {
		if _, err := c.Authenticate(tok); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if i%100 == 0 {
			f.clk.Advance(time.Millisecond) // last-used moves, still in memory only
		}
	}
	if n := f.db.Queries() - before; n != 0 {
		t.Errorf("10,000 Authenticate calls ran %d queries, want 0", n)
	}
	if allocs := testing.AllocsPerRun(1000, func() { c.Authenticate(tok) }); allocs != 0 {
		t.Errorf("Authenticate allocates %v times per call, want 0", allocs)
	}
}

// TestExpiryNeedsNoPoll: a key expires on the clock alone.
func TestExpiryNeedsNoPoll(t *testing.T) {
	f := newFixture(t)
	_, tok := f.create(t, Spec{Expires: time.Minute})
	c := startCache(t, f.db, time.Hour, f.clk.Now)
	if _, err := c.Authenticate(tok); err != nil {
		t.Fatal(err)
	}
	before := f.db.Queries()
	f.clk.Advance(time.Minute)
	if _, err := c.Authenticate(tok); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("after expiry = %v, want ErrInvalidKey", err)
	}
	if f.db.Queries() != before {
		t.Error("expiry needed a query")
	}
}

// TestPollAndLastUsed drives the poller's tick by hand: one query when
// nothing changed, last-used written once per tick (not per request) and
// without moving the version, and a final flush on Close.
func TestPollAndLastUsed(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	k, tok := f.create(t, Spec{})
	c := startCache(t, f.db, time.Hour, f.clk.Now)

	q := f.db.Queries()
	if err := c.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.db.Queries() - q; n != 1 {
		t.Errorf("an idle tick ran %d statements, want 1 (SELECT MAX(version))", n)
	}

	v := f.maxVersion(t)
	for range 100 {
		c.Authenticate(tok)
	}
	used := f.clk.Now()
	q = f.db.Queries()
	if err := c.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.db.Queries() - q; n != 4 {
		t.Errorf("a tick after 100 requests ran %d statements, want 4 (poll, begin, update, commit)", n)
	}
	if got, _ := f.m.Get(ctx, k.ID); got.LastUsed == nil || !got.LastUsed.Equal(used) {
		t.Errorf("last used = %v, want %v", got.LastUsed, used)
	}
	if f.maxVersion(t) != v {
		t.Error("writing last-used moved the version (every tick would reload)")
	}

	// A reload (another process changed the key) keeps the unflushed time.
	f.clk.Advance(time.Minute)
	c.Authenticate(tok)
	if err := (&Manager{DB: storetest.OpenDir(t, f.dir)}).Update(ctx, "os:cli", k.ID, Change{Limits: &Limits{RPM: 1}}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	if err := c.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.m.Get(ctx, k.ID); got.LastUsed == nil || !got.LastUsed.Equal(used.Add(time.Minute)) {
		t.Errorf("last used across a reload = %v, want %v", got.LastUsed, used.Add(time.Minute))
	}

	// Close writes what the last tick had not.
	f.clk.Advance(time.Minute)
	c.Authenticate(tok)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	var last sql.NullInt64
	f.db.QueryRow("SELECT last_used_at FROM keys WHERE id = ?", k.ID).Scan(&last)
	if want := f.clk.Now().UnixMilli(); last.Int64 != want {
		t.Errorf("last_used_at after Close = %d, want %d", last.Int64, want)
	}
}

func TestStartTwiceFails(t *testing.T) {
	f := newFixture(t)
	c := startCache(t, f.db, time.Hour, nil)
	if err := c.Start(t.Context()); err == nil {
		t.Error("second Start succeeded")
	}
}

// TestAuthenticateDuringReloads races requests against snapshot swaps
// (meaningful under -race).
func TestAuthenticateDuringReloads(t *testing.T) {
	f := newFixture(t)
	k, tok := f.create(t, Spec{})
	c := startCache(t, f.db, time.Millisecond, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if p, err := c.Authenticate(tok); err != nil || !p.AllowsModel("llama3") {
					t.Errorf("Authenticate during reloads = %v, %v", p, err)
					return
				}
			}
		})
	}
	for i := range 20 {
		if err := f.m.Update(t.Context(), "os:t", k.ID, Change{Limits: &Limits{RPM: int64(i + 1)}}); err != nil {
			t.Error(err)
		}
	}
	testwait.For(t, "the last limits", func() bool {
		p, err := c.Authenticate(tok)
		return err == nil && p.Limits.RPM == 20
	})
	close(stop)
	wg.Wait()
}

func BenchmarkAuthenticate(b *testing.B) {
	f := newFixture(b)
	for range 1000 { // a realistic map, not a single entry
		f.create(b, Spec{})
	}
	_, tok := f.create(b, Spec{Models: []string{"llama3*"}})
	c := startCache(b, f.db, time.Hour, nil)
	before := f.db.Queries()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Authenticate(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Authenticate(tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("invalid", func(b *testing.B) {
		bad := format(newID(), newSecret())
		b.ReportAllocs()
		for b.Loop() {
			c.Authenticate(bad)
		}
	})
	if n := f.db.Queries() - before; n != 0 {
		b.Errorf("%d queries on the hot path", n)
	}
}
