package models

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestGuardPinsFromOtherProcesses: the Guard serves the database's pins
// from memory (no SQL per request); a pin set or removed through another
// handle on the same file (`warden models pin`, another process) is served
// once the refresh interval passed, one set through this process's
// Governor at once.
func TestGuardPinsFromOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	db, other := storetest.OpenDir(t, dir), storetest.OpenDir(t, dir)
	ctx := t.Context()
	clock := storetest.NewClock(storetest.T0)
	name := "registry.ollama.ai/library/m:latest"
	g := &Guard{DB: db, Now: clock.Now, Refresh: time.Second}
	served, swapped := Info{Name: "m", Digest: digest('a')}, Info{Name: "m", Digest: digest('b')}
	check := func(what string, m Info, want error) {
		t.Helper()
		if err := g.Check(ctx, m); !errors.Is(err, want) {
			t.Fatalf("%s: Check(%s) = %v, want %v", what, m.Digest[:4], err, want)
		}
	}

	check("unpinned", swapped, nil)
	before := db.Queries()
	for range 10 {
		check("unpinned, again", swapped, nil)
	}
	if n := db.Queries() - before; n != 0 {
		t.Fatalf("10 checks within the refresh ran %d statements, want 0", n)
	}

	f := newFake()
	f.set(name, digest('a'))
	cli := &Governor{Backend: f, DB: other} // `warden models pin` in another process
	if _, err := cli.Pin(ctx, "os:t", "m", ""); err != nil {
		t.Fatal(err)
	}
	check("pinned elsewhere, before the refresh", swapped, nil)
	clock.Advance(time.Second)
	check("pinned elsewhere, after the refresh", swapped, ErrDigestMismatch)
	check("pinned elsewhere, the pinned digest", served, nil)

	if err := cli.Unpin(ctx, "os:t", "m"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	check("unpinned elsewhere, after the refresh", swapped, nil)

	local := &Governor{Backend: f, DB: db, OnPinChange: g.Invalidate} // the admin API's
	if _, err := local.Pin(ctx, "os:t", "m", ""); err != nil {
		t.Fatal(err)
	}
	check("pinned here", swapped, ErrDigestMismatch)
	if err := local.Unpin(ctx, "os:t", "m"); err != nil {
		t.Fatal(err)
	}
	check("unpinned here", swapped, nil)
}

// TestGuardRefreshUnderLoad: checks running while the pins are refreshed
// and invalidated see either pin state and nothing else (run with -race).
func TestGuardRefreshUnderLoad(t *testing.T) {
	db := storetest.Open(t)
	ctx := t.Context()
	clock := storetest.NewClock(storetest.T0)
	g := &Guard{DB: db, Now: clock.Now}
	if _, err := db.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, ?, 0, 'os:t')`,
		"registry.ollama.ai/library/m:latest", digest('a')); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if err := g.Check(ctx, Info{Name: "m", Digest: digest('a')}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 50 {
		clock.Advance(DefaultPinRefresh)
		g.Invalidate()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a check of the pinned digest during refreshes: %v", err)
	}
}

// TestGuardFailsClosed: a pins table that cannot be read refuses the
// request rather than serving a model unchecked.
func TestGuardFailsClosed(t *testing.T) {
	db := storetest.Open(t)
	g := &Guard{DB: db}
	db.Close()
	if err := g.Check(context.Background(), Info{Name: "m", Digest: digest('a')}); err == nil || !strings.Contains(err.Error(), "model pins") {
		t.Fatalf("Check with the database closed = %v, want a read error", err)
	}
}

// BenchmarkGuardCheck is the serving check every request that names a
// model pays: an allowed model with a database pin that matches.
func BenchmarkGuardCheck(b *testing.B) {
	db := storetest.Open(b)
	ctx := b.Context()
	allow, err := ParseAllowlist([]string{"llama3.2:*", "m"})
	if err != nil {
		b.Fatal(err)
	}
	d := strings.Repeat("1", 64)
	if _, err := db.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, ?, 0, 'os:t')`,
		"registry.ollama.ai/library/llama3.2:3b", d); err != nil {
		b.Fatal(err)
	}
	g := &Guard{Allow: allow, DB: db}
	m := Info{Name: "llama3.2:3b", Digest: d}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}
