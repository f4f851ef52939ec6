package keys

import (
	"testing"
	"time"
)

// TestAdminWritesRefreshTheCache: with a poll an hour away, every change
// made through Admin is seen by the cache at once.
func TestAdminWritesRefreshTheCache(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	cache := NewCache(f.db, time.Hour, f.clk.Now)
	if err := cache.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	a := Admin{Manager: f.m, Cache: cache}

	k, token, err := a.Create(ctx, "os:tester", Spec{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Authenticate(token); err != nil {
		t.Fatalf("a key created through Admin is refused: %v", err)
	}

	w := 7
	if err := a.Update(ctx, "os:tester", k.ID, Change{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	if got := cache.Weight(k.ID); got != w {
		t.Errorf("weight after Update = %d, want %d", got, w)
	}

	_, rotated, err := a.Rotate(ctx, "os:tester", k.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Authenticate(rotated); err != nil {
		t.Errorf("the rotated secret is refused: %v", err)
	}

	if err := a.Revoke(ctx, "os:tester", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Authenticate(rotated); err == nil {
		t.Error("a key revoked through Admin still authenticates")
	}

	// A write that fails returns its error.
	if err := a.Revoke(ctx, "os:tester", "nosuchkey"); err == nil {
		t.Error("revoking an unknown key: no error")
	}

	// The same writes through the Manager alone wait for the poll.
	_, other, err := f.m.Create(ctx, "os:tester", Spec{Name: "direct"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Authenticate(other); err == nil {
		t.Error("a key created behind the cache's back was seen before the poll: the test proves nothing")
	}
}
