package keys

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/audit"
)

func TestCheckUser(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty", "", true},
		{"uuid", "5b0e3c1e-6f1d-4f55-9d59-0c3a8d1f2a77", true},
		{"email", "alice@example.org", true},
		{"unicode name", "Zoë Ångström 山田", true},
		{"at the bound", strings.Repeat("a", MaxUserLen), true},
		{"one past the bound", strings.Repeat("a", MaxUserLen+1), false},
		{"multibyte past the bound", strings.Repeat("é", MaxUserLen/2+1), false},
		{"newline", "alice\nbob", false},
		{"escape", "alice\x1b[31m", false},
		{"nul", "a\x00", false},
		{"del", "a\x7f", false},
		{"c1 control", "a\u0085", false},
		{"bidi override", "a\u202eb", false},
		{"invalid utf-8", "a\xffb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckUser(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckUser(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadUser) {
				t.Fatalf("CheckUser(%q) = %v, not ErrBadUser", tc.in, err)
			}
		})
	}
}

func FuzzCheckUser(f *testing.F) {
	f.Add("alice")
	f.Add("")
	f.Add("a\u202eb")
	f.Add(strings.Repeat("x", MaxUserLen+1))
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckUser(s)
		if err != nil {
			if !errors.Is(err, ErrBadUser) {
				t.Fatalf("CheckUser(%q) = %v, not ErrBadUser", s, err)
			}
			return
		}
		if len(s) > MaxUserLen || !utf8.ValidString(s) {
			t.Fatalf("CheckUser(%q) accepted %d bytes (valid UTF-8 %v)", s, len(s), utf8.ValidString(s))
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("CheckUser(%q) accepted control %U", s, r)
			}
		}
		// An accepted id survives a JSON round trip unchanged (it is stored
		// and shown as JSON).
		b, _ := json.Marshal(s)
		var back string
		if json.Unmarshal(b, &back) != nil || back != s {
			t.Fatalf("CheckUser(%q) accepted an id JSON changes to %q", s, back)
		}
	})
}

func TestDelegateScopeAndRequireUser(t *testing.T) {
	f := newFixture(t)
	yes := true
	k, tok := f.create(t, Spec{Scopes: []Scope{ScopeChat, ScopeDelegate}, RequireUser: &yes,
		Limits: Limits{UserTokensPerDay: 500, UserRPM: 3}})
	got, err := f.m.Get(t.Context(), k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RequireUser == nil || !*got.RequireUser || got.Limits.UserTokensPerDay != 500 || got.Limits.UserRPM != 3 {
		t.Fatalf("stored key = %+v, want require_user and the user limits", got)
	}
	c := startCache(t, f.db, 0, f.clk.Now)
	p, err := c.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Delegates() || p.RequireUser == nil || !*p.RequireUser {
		t.Fatalf("principal = %+v, want a delegate requiring users", p)
	}
	plain, ptok := f.create(t, Spec{Name: "plain"})
	pp, _ := c.Authenticate(ptok)
	if pp == nil {
		if err := c.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		pp, _ = c.Authenticate(ptok)
	}
	if pp == nil || pp.Delegates() {
		t.Fatalf("key %s with default scopes delegates (%+v)", plain.ID, pp)
	}
	// Clearing require_user goes back to the configured default.
	if err := f.m.Update(t.Context(), "os:tester", k.ID, Change{ClearRequireUser: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ = f.m.Get(t.Context(), k.ID); got.RequireUser != nil {
		t.Fatalf("require_user after clearing = %v, want nil", *got.RequireUser)
	}
	if err := (Limits{UserConcurrency: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "user-concurrency") {
		t.Fatalf("negative user concurrency: %v", err)
	}
}

func TestBlockUser(t *testing.T) {
	f := newFixture(t)
	k, tok := f.create(t, Spec{Scopes: []Scope{ScopeChat, ScopeDelegate}})
	c := startCache(t, f.db, 0, f.clk.Now)
	ctx := t.Context()
	events := f.rows(t, "admin_events")
	if err := f.m.BlockUser(ctx, "os:tester", k.ID, "mallory"); err != nil {
		t.Fatal(err)
	}
	if err := f.m.BlockUser(ctx, "os:tester", k.ID, "mallory"); err != nil { // again: no change
		t.Fatal(err)
	}
	if n := f.rows(t, "admin_events"); n != events+1 {
		t.Fatalf("admin events %d after blocking twice, want %d", n, events+1)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := c.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocks("mallory") || p.Blocks("alice") {
		t.Fatalf("Blocks(mallory)=%v Blocks(alice)=%v, want true, false", p.Blocks("mallory"), p.Blocks("alice"))
	}
	// The event is in the audit chain, naming the user.
	recs, err := audit.Query(ctx, f.db, audit.Filter{KeyID: k.ID})
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.KeyID != k.ID || !strings.Contains(string(last.Detail), ActionBlockUser) || !strings.Contains(string(last.Detail), "mallory") {
		t.Fatalf("last admin record = %s %s, want the block of mallory", last.KeyID, last.Detail)
	}
	if err := f.m.UnblockUser(ctx, "os:tester", k.ID, "mallory"); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ = c.Authenticate(tok); p.Blocks("mallory") {
		t.Fatal("mallory still blocked after unblock")
	}
	if got, _ := f.m.Get(ctx, k.ID); len(got.BlockedUsers) != 0 {
		t.Fatalf("blocked users after unblock = %q", got.BlockedUsers)
	}
	for _, bad := range []string{"", "a\nb", strings.Repeat("u", MaxUserLen+1)} {
		if err := f.m.BlockUser(ctx, "os:tester", k.ID, bad); !errors.Is(err, ErrBadUser) {
			t.Errorf("BlockUser(%q) = %v, want ErrBadUser", bad, err)
		}
	}
	if err := f.m.BlockUser(ctx, "os:tester", "nosuchkey", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("BlockUser on a missing key = %v, want ErrNotFound", err)
	}
}
