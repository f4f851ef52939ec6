package keys

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	id, secret := newID(), newSecret()
	good := format(id, secret)
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"issued", good, true},
		{"empty", "", false},
		{"prefix only", "wdn_", false},
		{"other vendor", "sk-" + strings.Repeat("a", 66), false},
		{"upper-case prefix", "WDN_" + good[4:], false},
		{"upper-case id", "wdn_" + strings.ToUpper(id) + good[16:], false},
		{"upper-case secret", good[:17] + strings.ToUpper(secret), false},
		{"short", good[:len(good)-1], false},
		{"long", good + "a", false},
		{"trailing newline", good[:len(good)-1] + "\n", false},
		{"dash separator", good[:16] + "-" + good[17:], false},
		{"underscore in id", "wdn_" + id[:11] + "_" + "_" + secret, false},
		{"digit outside alphabet in id", "wdn_" + id[:11] + "1" + good[16:], false},
		{"padding char", good[:len(good)-1] + "=", false},
		{"non-zero padding bits", good[:len(good)-1] + "b", false},
		{"non-ascii", good[:20] + "é" + good[22:], false},
		{"last char a", good[:len(good)-1] + "a", true},
		{"last char q", good[:len(good)-1] + "q", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotID, gotSecret, err := Parse(tt.token)
			if !tt.ok {
				if err != ErrInvalidKey || gotID != "" || gotSecret != "" {
					t.Fatalf("Parse(%q) = %q, %q, %v; want ErrInvalidKey", tt.token, gotID, gotSecret, err)
				}
				return
			}
			if err != nil || format(gotID, gotSecret) != tt.token {
				t.Fatalf("Parse(%q) = %q, %q, %v", tt.token, gotID, gotSecret, err)
			}
		})
	}
}

func TestIssuedTokens(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, secret := newID(), newSecret()
		if !ValidID(id) || len(secret) != secretLen {
			t.Fatalf("issued id %q secret length %d", id, len(secret))
		}
		raw, err := enc.DecodeString(secret)
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret decodes to %d bytes (%v), want 32", len(raw), err)
		}
		if _, _, err := Parse(format(id, secret)); err != nil {
			t.Fatalf("an issued token does not parse: %v", err)
		}
		if seen[id] || seen[secret] {
			t.Fatal("a random id or secret repeated")
		}
		seen[id], seen[secret] = true, true
		if hashSecret(secret) != sha256.Sum256([]byte(secret)) {
			t.Fatal("hashSecret is not SHA-256 of the secret")
		}
	}
	if ValidID("") || ValidID("aaaaaaaaaaa") || ValidID("aaaaaaaaaaa0") {
		t.Error("ValidID accepted a malformed id")
	}
}

// FuzzParse: Parse never panics, refuses with the one sentinel, and a token
// it accepts is the only spelling of its id and secret.
func FuzzParse(f *testing.F) {
	f.Add(format(newID(), newSecret()))
	f.Add("")
	f.Add("wdn_")
	f.Add("wdn_aaaaaaaaaaaa_")
	f.Add("Bearer wdn_aaaaaaaaaaaa_" + strings.Repeat("a", secretLen))
	f.Fuzz(func(t *testing.T, token string) {
		id, secret, err := Parse(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Parse error %v is not ErrInvalidKey", err)
			}
			return
		}
		if got := format(id, secret); got != token {
			t.Fatalf("Parse(%q) re-formats to %q", token, got)
		}
		if !ValidID(id) {
			t.Fatalf("Parse accepted id %q that ValidID refuses", id)
		}
		raw, err := enc.DecodeString(secret)
		if err != nil || len(raw) != secretBytes {
			t.Fatalf("accepted secret %q decodes to %d bytes (%v)", secret, len(raw), err)
		}
		if enc.EncodeToString(raw) != secret {
			t.Fatalf("accepted secret %q is not canonical", secret)
		}
	})
}
