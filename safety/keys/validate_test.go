package keys

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCreateRefusesBadInputWritingNothing: every refusal happens before the
// transaction, so neither table gains a row and the version does not move.
func TestCreateRefusesBadInputWritingNothing(t *testing.T) {
	tests := []struct {
		name  string
		actor string
		spec  Spec
		want  string // in the error
	}{
		{"no actor", "", Spec{Name: "a"}, "actor"},
		{"empty name", "os:t", Spec{}, "name"},
		{"blank name", "os:t", Spec{Name: "   "}, "name"},
		{"long name", "os:t", Spec{Name: strings.Repeat("x", 65)}, "name"},
		{"newline in name", "os:t", Spec{Name: "a\nb"}, "name"},
		{"escape in name", "os:t", Spec{Name: "a\x1b[31m"}, "name"},
		{"invalid utf-8 name", "os:t", Spec{Name: "a\xff"}, "name"},
		{"unknown scope", "os:t", Spec{Name: "a", Scopes: []Scope{ScopeChat, "root"}}, `"root"`},
		{"empty scope", "os:t", Spec{Name: "a", Scopes: []Scope{""}}, "scope"},
		{"bad glob", "os:t", Spec{Name: "a", Models: []string{"llama["}}, "llama["},
		{"bad model name", "os:t", Spec{Name: "a", Models: []string{"bad name!"}}, "bad name!"},
		{"empty model", "os:t", Spec{Name: "a", Models: []string{"llama3", " "}}, "empty model"},
		{"negative expiry", "os:t", Spec{Name: "a", Expires: -time.Hour}, "expiry"},
		{"negative rpm", "os:t", Spec{Name: "a", Limits: Limits{RPM: -1}}, "rpm"},
		{"negative tpm", "os:t", Spec{Name: "a", Limits: Limits{TPM: -1}}, "tpm"},
		{"negative day", "os:t", Spec{Name: "a", Limits: Limits{TokensPerDay: -1}}, "tokens-per-day"},
		{"negative month", "os:t", Spec{Name: "a", Limits: Limits{TokensPerMonth: -1}}, "tokens-per-month"},
		{"negative concurrency", "os:t", Spec{Name: "a", Limits: Limits{Concurrency: -1}}, "concurrency"},
		{"negative output tokens", "os:t", Spec{Name: "a", Limits: Limits{MaxOutputTokens: -1}}, "max-output-tokens"},
		{"negative output chars", "os:t", Spec{Name: "a", Limits: Limits{MaxOutputChars: -1}}, "max-output-chars"},
		{"negative input tokens", "os:t", Spec{Name: "a", Limits: Limits{MaxInputTokens: -1}}, "max-input-tokens"},
		{"unprintable profile", "os:t", Spec{Name: "a", Profile: "p\x00"}, "profile"},
	}
	f := newFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, tok, err := f.m.Create(t.Context(), tt.actor, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Create error = %v, want one mentioning %q", err, tt.want)
			}
			if k.ID != "" || tok != "" {
				t.Errorf("Create returned key %q token %q with an error", k.ID, tok)
			}
			if n, e := f.rows(t, "keys"), f.rows(t, "admin_events"); n != 0 || e != 0 {
				t.Errorf("after refusal: %d keys, %d events; want 0, 0", n, e)
			}
		})
	}
}

func TestChangesRefuseBadInputWritingNothing(t *testing.T) {
	f := newFixture(t)
	k, _ := f.create(t, Spec{})
	ctx := t.Context()
	v, events := f.maxVersion(t), f.rows(t, "admin_events")

	if _, _, err := f.m.Rotate(ctx, "os:t", k.ID, -time.Second); err == nil || !strings.Contains(err.Error(), "grace") {
		t.Errorf("Rotate with negative grace = %v, want a grace error", err)
	}
	if err := f.m.Update(ctx, "os:t", k.ID, Change{Limits: &Limits{TokensPerDay: -5}}); err == nil {
		t.Error("Update with a negative limit succeeded")
	}
	if err := f.m.Revoke(ctx, "", k.ID); err == nil {
		t.Error("Revoke without an actor succeeded")
	}
	for _, op := range []struct {
		name string
		err  error
	}{
		{"Get", func() error { _, err := f.m.Get(ctx, "aaaaaaaaaaaa"); return err }()},
		{"Rotate", func() error { _, _, err := f.m.Rotate(ctx, "os:t", "aaaaaaaaaaaa", 0); return err }()},
		{"Revoke", f.m.Revoke(ctx, "os:t", "aaaaaaaaaaaa")},
		{"Update", f.m.Update(ctx, "os:t", "aaaaaaaaaaaa", Change{Limits: &Limits{RPM: 1}})},
	} {
		if !errors.Is(op.err, ErrNotFound) {
			t.Errorf("%s of an unknown id = %v, want ErrNotFound", op.name, op.err)
		}
	}
	if got, gotE := f.maxVersion(t), f.rows(t, "admin_events"); got != v || gotE != events {
		t.Errorf("version %d→%d, events %d→%d: a refused change wrote something", v, got, events, gotE)
	}
	if got, _ := f.m.Get(ctx, k.ID); got.Limits != (Limits{}) || got.Rotated != nil || got.Revoked != nil {
		t.Errorf("key changed by refused operations: %+v", got)
	}
}

func TestCreateNormalizes(t *testing.T) {
	f := newFixture(t)
	k, _ := f.create(t, Spec{Name: "  alice  ", Models: []string{" Llama3 ", "llama3", "QWEN2.5:*"}})
	if k.Name != "alice" {
		t.Errorf("name = %q, want trimmed", k.Name)
	}
	if !slices.Equal(k.Scopes, DefaultScopes()) || slices.Contains(k.Scopes, ScopeAdmin) {
		t.Errorf("default scopes = %v, want %v (no admin)", k.Scopes, DefaultScopes())
	}
	if want := []string{"llama3", "qwen2.5:*"}; !slices.Equal(k.Models, want) {
		t.Errorf("models = %q, want %q", k.Models, want)
	}
	k2, _ := f.create(t, Spec{Name: "b", Scopes: []Scope{"Admin", ScopeAdmin, ScopeChat}})
	if want := []Scope{ScopeAdmin, ScopeChat}; !slices.Equal(k2.Scopes, want) {
		t.Errorf("scopes = %v, want %v", k2.Scopes, want)
	}
	if err := (Spec{Name: "ok", Models: []string{"hf.co/*/*"}}).Validate(); err != nil {
		t.Errorf("Validate of a good spec: %v", err)
	}
}
