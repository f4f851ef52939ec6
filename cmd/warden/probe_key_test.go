package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// The probe key is made once, kept in probe.key (0600), reused, rotated
// once older than its maximum age, and made anew after a revoke.
func TestEnsureProbeKey(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	ctx := t.Context()
	m := &keys.Manager{DB: db}
	id, tok, fresh, err := ensureProbeKey(ctx, db, dir, "os:test", 0)
	if err != nil || !fresh {
		t.Fatalf("first: fresh %v err %v", fresh, err)
	}
	fi, err := os.Stat(filepath.Join(dir, probeKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("probe.key: %v %v", fi, err)
	}
	k, err := m.Get(ctx, id)
	if err != nil || !k.Probe || k.Name != probeKeyName || len(k.Scopes) != 2 {
		t.Fatalf("key %+v %v", k, err)
	}
	id2, tok2, fresh, err := ensureProbeKey(ctx, db, dir, "os:test", 0)
	if err != nil || fresh || id2 != id || tok2 != tok {
		t.Fatalf("second: %s %v %v, want the same key", id2, fresh, err)
	}
	id3, tok3, fresh, err := ensureProbeKey(ctx, db, dir, "os:test", 1) // older than 1ns: rotate
	if err != nil || !fresh || id3 != id || tok3 == tok {
		t.Fatalf("rotate: %s fresh %v err %v", id3, fresh, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, probeKeyFile)); strings.TrimSpace(string(b)) != tok3 {
		t.Errorf("probe.key not rewritten after the rotation")
	}
	if err := m.Revoke(ctx, "os:test", id); err != nil {
		t.Fatal(err)
	}
	id4, _, fresh, err := ensureProbeKey(ctx, db, dir, "os:test", 0)
	if err != nil || !fresh || id4 == id {
		t.Fatalf("after revoke: %s fresh %v err %v, want a new key", id4, fresh, err)
	}
}
