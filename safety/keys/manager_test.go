package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestCreateGetList(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	created := f.clk.Now()
	k, tok := f.create(t, Spec{Name: "alice", Expires: 90 * 24 * time.Hour, Limits: Limits{RPM: 10}, Profile: "default"})
	id, secret, err := Parse(tok)
	if err != nil || id != k.ID {
		t.Fatalf("token %q parses to %q, %v; want id %q", tok, id, err, k.ID)
	}
	if raw, err := enc.DecodeString(secret); err != nil || len(raw) != 32 {
		t.Errorf("secret decodes to %d bytes (%v), want 32", len(raw), err)
	}
	if !k.Created.Equal(created) || k.Expires == nil || !k.Expires.Equal(created.Add(90*24*time.Hour)) {
		t.Errorf("created %v expires %v, want %v and +90d", k.Created, k.Expires, created)
	}
	got, err := f.m.Get(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(k)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Errorf("Get = %s\nCreate returned %s", b, a)
	}
	f.clk.Advance(time.Second)
	k2, _ := f.create(t, Spec{Name: "bob"})
	list, err := f.m.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != k.ID || list[1].ID != k2.ID {
		t.Fatalf("List = %+v, %v; want alice then bob", list, err)
	}
	if k2.Expires != nil || k2.Revoked != nil || k2.Rotated != nil || k2.LastUsed != nil || k2.GraceUntil != nil {
		t.Errorf("fresh key has times set: %+v", k2)
	}
}

func TestEveryChangeBumpsTheGlobalVersion(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	var last int64
	step := func(what string) {
		t.Helper()
		v := f.maxVersion(t)
		if v <= last {
			t.Errorf("after %s MAX(version) = %d, want > %d", what, v, last)
		}
		last = v
	}
	a, _ := f.create(t, Spec{Name: "a"})
	step("create a")
	f.create(t, Spec{Name: "b"})
	step("create b")
	f.rotate(t, a.ID, time.Hour)
	step("rotate a")
	if err := f.m.Update(ctx, "os:t", a.ID, Change{Limits: &Limits{TPM: 5}}); err != nil {
		t.Fatal(err)
	}
	step("set limits a")
	if err := f.m.Revoke(ctx, "os:t", a.ID); err != nil {
		t.Fatal(err)
	}
	step("revoke a")
	// Revoking again changes nothing.
	if err := f.m.Revoke(ctx, "os:t", a.ID); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if v := f.maxVersion(t); v != last {
		t.Errorf("a repeated revoke moved the version %d→%d", last, v)
	}
	if _, _, err := f.m.Rotate(ctx, "os:t", a.ID, 0); !errors.Is(err, ErrRevoked) {
		t.Errorf("rotating a revoked key = %v, want ErrRevoked", err)
	}
}

func TestRotateAndLimitsAreStored(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	k, _ := f.create(t, Spec{})
	f.clk.Advance(time.Minute)
	rk, _, err := f.m.Rotate(ctx, "os:t", k.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clk.Now()
	if rk.Rotated == nil || !rk.Rotated.Equal(now) || rk.GraceUntil == nil || !rk.GraceUntil.Equal(now.Add(24*time.Hour)) {
		t.Errorf("rotated %v grace until %v, want %v and +24h", rk.Rotated, rk.GraceUntil, now)
	}
	rk, _, err = f.m.Rotate(ctx, "os:t", k.ID, 0)
	if err != nil || rk.GraceUntil != nil {
		t.Errorf("rotate with grace 0: grace until %v (%v), want none", rk.GraceUntil, err)
	}
	lim := Limits{RPM: 1, TPM: 2, TokensPerDay: 3, TokensPerMonth: 4, Concurrency: 5, MaxOutputTokens: 6, MaxOutputChars: 7, MaxInputTokens: 8}
	if err := f.m.Update(ctx, "os:t", k.ID, Change{Limits: &lim}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.m.Get(ctx, k.ID); got.Limits != lim {
		t.Errorf("limits = %+v, want %+v", got.Limits, lim)
	}
}

func TestAdminEventsNameActorAndHoldNoSecret(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	k, tok1, err := f.m.Create(ctx, "os:alice", Spec{Name: "ci", Scopes: []Scope{ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	_, tok2, err := f.m.Rotate(ctx, "key:adminid12345", k.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Update(ctx, "os:bob", k.ID, Change{Limits: &Limits{RPM: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Revoke(ctx, "os:carol", k.ID); err != nil {
		t.Fatal(err)
	}
	events, err := f.m.Events(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ actor, action string }{ // newest first
		{"os:carol", ActionRevoke}, {"os:bob", ActionUpdate},
		{"key:adminid12345", ActionRotate}, {"os:alice", ActionCreate},
	}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(events), len(want), events)
	}
	var secrets []string
	for _, tok := range []string{tok1, tok2} {
		_, s, _ := Parse(tok)
		h := sha256.Sum256([]byte(s))
		secrets = append(secrets, tok, s, hex.EncodeToString(h[:]),
			base64.StdEncoding.EncodeToString(h[:]), base64.RawStdEncoding.EncodeToString(h[:]))
	}
	for i, e := range events {
		if e.Actor != want[i].actor || e.Action != want[i].action || e.KeyID != k.ID || !e.At.Equal(f.clk.Now()) {
			t.Errorf("event %d = %+v, want %s by %s on %s", i, e, want[i].action, want[i].actor, k.ID)
		}
		if !json.Valid(e.Detail) {
			t.Errorf("event %d detail is not JSON: %s", i, e.Detail)
		}
		for _, s := range secrets {
			if strings.Contains(string(e.Detail), s) {
				t.Errorf("event %d detail %s holds a secret or hash", i, e.Detail)
			}
		}
	}
	if last, _ := f.m.Events(ctx, 1); len(last) != 1 || last[0].Action != ActionRevoke {
		t.Errorf("Events(1) = %+v, want the revoke", last)
	}
}

func TestSecretsNeverReachTheDatabaseFiles(t *testing.T) {
	f := newFixture(t)
	k, tok1 := f.create(t, Spec{Name: "s"})
	tok2 := f.rotate(t, k.ID, time.Hour)
	tok3 := f.rotate(t, k.ID, 0)
	c := startCache(t, f.db, time.Hour, f.clk.Now)
	if _, err := c.Authenticate(tok3); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // flushes last-used too
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(f.dir, "*"))
	if len(files) == 0 {
		t.Fatal("no database files found")
	}
	for _, tok := range []string{tok1, tok2, tok3} {
		_, secret, _ := Parse(tok)
		for _, path := range files { // warden.db, -wal, -shm
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds a secret", filepath.Base(path))
			}
		}
	}
}

func TestHasKeys(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if has, err := f.m.HasKeys(ctx); err != nil || has {
		t.Fatalf("HasKeys on an empty database = %v, %v; want false", has, err)
	}
	k, _ := f.create(t, Spec{Name: "admin", Scopes: []Scope{ScopeAdmin}})
	if err := f.m.Revoke(ctx, "os:t", k.ID); err != nil {
		t.Fatal(err)
	}
	if has, err := f.m.HasKeys(ctx); err != nil || !has {
		t.Fatalf("HasKeys with a revoked key = %v, %v; want true (first run happens once)", has, err)
	}
}

// TestTwoProcessesWriteConcurrently: a CLI and a server (two store.Open of
// one dir) writing at once wait for each other instead of failing, and
// every write gets its own version.
func TestTwoProcessesWriteConcurrently(t *testing.T) {
	f := newFixture(t)
	other := &Manager{DB: storetest.OpenDir(t, f.dir), Now: f.clk.Now}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		m := f.m
		if i%2 == 1 {
			m = other
		}
		wg.Go(func() {
			_, _, err := m.Create(t.Context(), "os:t", Spec{Name: "k"})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent create: %v", err)
		}
	}
	var n, distinct int
	f.db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT version) FROM keys").Scan(&n, &distinct)
	if n != 40 || distinct != 40 {
		t.Errorf("%d keys with %d distinct versions, want 40 and 40", n, distinct)
	}
}
