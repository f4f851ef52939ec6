package keys

import (
	"errors"
	"testing"
	"time"
)

// TestAuthenticateOutcomes covers every way a token is accepted or refused.
// Each case prepares the database, then a Cache loads it, then the clock
// may move (after): expiry and grace need no reload.
func TestAuthenticateOutcomes(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture) string // returns the token to present
		after time.Duration
		ok    bool
	}{
		{"valid", func(t *testing.T, f *fixture) string {
			_, tok := f.create(t, Spec{})
			return tok
		}, 0, true},
		{"missing", func(t *testing.T, f *fixture) string {
			f.create(t, Spec{})
			return ""
		}, 0, false},
		{"bearer prefix left on", func(t *testing.T, f *fixture) string {
			_, tok := f.create(t, Spec{})
			return "Bearer " + tok
		}, 0, false},
		{"malformed", func(t *testing.T, f *fixture) string {
			_, tok := f.create(t, Spec{})
			return tok[:len(tok)-1]
		}, 0, false},
		{"unknown id", func(t *testing.T, f *fixture) string {
			f.create(t, Spec{})
			return format(newID(), newSecret())
		}, 0, false},
		{"wrong secret", func(t *testing.T, f *fixture) string {
			k, _ := f.create(t, Spec{})
			return format(k.ID, newSecret())
		}, 0, false},
		{"revoked", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			if err := f.m.Revoke(ctx, "os:tester", k.ID); err != nil {
				t.Fatal(err)
			}
			return tok
		}, 0, false},
		{"not yet expired", func(t *testing.T, f *fixture) string {
			_, tok := f.create(t, Spec{Expires: time.Hour})
			return tok
		}, time.Hour - time.Millisecond, true},
		{"expired", func(t *testing.T, f *fixture) string {
			_, tok := f.create(t, Spec{Expires: time.Hour})
			return tok
		}, time.Hour, false},
		{"old secret during grace", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			f.rotate(t, k.ID, time.Hour)
			return tok
		}, time.Hour - time.Millisecond, true},
		{"old secret after grace", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			f.rotate(t, k.ID, time.Hour)
			return tok
		}, time.Hour, false},
		{"new secret after rotate", func(t *testing.T, f *fixture) string {
			k, _ := f.create(t, Spec{})
			return f.rotate(t, k.ID, time.Hour)
		}, 2 * time.Hour, true},
		{"rotate with grace 0: old secret", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			f.rotate(t, k.ID, 0)
			return tok
		}, 0, false},
		{"rotate with grace 0: new secret", func(t *testing.T, f *fixture) string {
			k, _ := f.create(t, Spec{})
			return f.rotate(t, k.ID, 0)
		}, 0, true},
		{"rotated twice in grace: first secret", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			f.rotate(t, k.ID, time.Hour)
			f.rotate(t, k.ID, time.Hour)
			return tok
		}, 0, false},
		{"rotated twice in grace: second secret", func(t *testing.T, f *fixture) string {
			k, _ := f.create(t, Spec{})
			tok := f.rotate(t, k.ID, time.Hour)
			f.rotate(t, k.ID, time.Hour)
			return tok
		}, 0, true},
		{"revoked during grace: old secret", func(t *testing.T, f *fixture) string {
			k, tok := f.create(t, Spec{})
			f.rotate(t, k.ID, time.Hour)
			if err := f.m.Revoke(ctx, "os:tester", k.ID); err != nil {
				t.Fatal(err)
			}
			return tok
		}, 0, false},
		{"revoked during grace: new secret", func(t *testing.T, f *fixture) string {
			k, _ := f.create(t, Spec{})
			tok := f.rotate(t, k.ID, time.Hour)
			if err := f.m.Revoke(ctx, "os:tester", k.ID); err != nil {
				t.Fatal(err)
			}
			return tok
		}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tok := tt.setup(t, f)
			c := startCache(t, f.db, time.Hour, f.clk.Now)
			f.clk.Advance(tt.after)
			before := f.db.Queries()
			p, err := c.Authenticate(tok)
			if f.db.Queries() != before {
				t.Errorf("Authenticate ran %d queries, want 0", f.db.Queries()-before)
			}
			if tt.ok {
				if err != nil || p == nil {
					t.Fatalf("Authenticate = %v, %v; want a principal", p, err)
				}
				if id, _, _ := Parse(tok); p.KeyID != id || p.Name != "test" {
					t.Errorf("principal = %+v, want key %s named test", p, id)
				}
				return
			}
			if p != nil || err != ErrInvalidKey { // the one sentinel, unwrapped
				t.Fatalf("Authenticate = %v, %v; want nil, ErrInvalidKey", p, err)
			}
		})
	}
}

func (f *fixture) rotate(t *testing.T, id string, grace time.Duration) string {
	t.Helper()
	_, tok, err := f.m.Rotate(t.Context(), "os:tester", id, grace)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	return tok
}

func TestAuthenticateBeforeStart(t *testing.T) {
	f := newFixture(t)
	_, tok := f.create(t, Spec{})
	c := NewCache(f.db, 0, f.clk.Now)
	if _, err := c.Authenticate(tok); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Authenticate before Start = %v, want ErrInvalidKey", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close before Start = %v", err)
	}
}

func TestPrincipalCarriesKey(t *testing.T) {
	f := newFixture(t)
	lim := Limits{RPM: 60, TPM: 1000, MaxOutputTokens: 256}
	k, tok := f.create(t, Spec{Name: "bob", Scopes: []Scope{ScopeChat}, Models: []string{"llama3"}, Limits: lim, Profile: "strict"})
	c := startCache(t, f.db, time.Hour, f.clk.Now)
	p, err := c.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyID != k.ID || p.Name != "bob" || p.Limits != lim || p.Profile != "strict" {
		t.Errorf("principal = %+v", p)
	}
	if !p.Allows(ScopeChat) || p.Allows(ScopeEmbeddings) || !p.AllowsModel("llama3:latest") || p.AllowsModel("mistral") {
		t.Errorf("principal scopes/models wrong: %+v", p)
	}
}
