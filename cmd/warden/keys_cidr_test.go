package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestKeysCLIAllowCIDR: --allow-cidr, repeated or comma-separated, stores
// the key's client networks; update replaces them, --allow-cidr "" clears
// them, flags not given keep them, and a bad network is refused with
// nothing written.
func TestKeysCLIAllowCIDR(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, dir, "keys", "create", "--name", "lan", "--allow-cidr", "10.0.0.0/24,127.0.0.2", "--allow-cidr", "192.168.1.5/16", "--json")
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("keys create printed %q (%v)", out, err)
	}
	id := created.ID
	if got, want := strings.Join(showKey(t, dir, id).AllowCIDRs, ","), "10.0.0.0/24,127.0.0.2/32,192.168.0.0/16"; got != want {
		t.Errorf("created allow_cidrs %q, want %q", got, want)
	}
	text, err := runCLI(t, dir, "keys", "show", id)
	if err != nil || !strings.Contains(text, "allowed from") || !strings.Contains(text, "127.0.0.2/32") {
		t.Errorf("keys show: %v %q, want the networks", err, text)
	}

	if _, err := runCLI(t, dir, "keys", "update", id, "--rpm", "7"); err != nil {
		t.Fatal(err)
	}
	if k := showKey(t, dir, id); len(k.AllowCIDRs) != 3 || k.Limits.RPM != 7 {
		t.Errorf("update without --allow-cidr: %+v, want the networks kept", k)
	}
	if _, err := runCLI(t, dir, "keys", "update", id, "--allow-cidr", "127.0.0.3"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(showKey(t, dir, id).AllowCIDRs, ","); got != "127.0.0.3/32" {
		t.Errorf("after update: %q, want 127.0.0.3/32", got)
	}
	if _, err := runCLI(t, dir, "keys", "update", id, "--allow-cidr", ""); err != nil {
		t.Fatal(err)
	}
	if k := showKey(t, dir, id); len(k.AllowCIDRs) != 0 {
		t.Errorf("after --allow-cidr \"\": %q, want none", k.AllowCIDRs)
	}

	for _, args := range [][]string{
		{"keys", "create", "--name", "bad", "--allow-cidr", "10.0.0.0/33"},
		{"keys", "create", "--name", "bad", "--allow-cidr", "10.0.0.1,office"},
		{"keys", "update", id, "--allow-cidr", "300.1.1.1"},
	} {
		if _, err := runCLI(t, dir, args...); err == nil || !strings.Contains(err.Error(), "client network") {
			t.Errorf("warden %v: err %v, want a client network error", args, err)
		}
	}
	out, _ = runCLI(t, dir, "keys", "list", "--json")
	var ks []json.RawMessage
	if err := json.Unmarshal([]byte(out), &ks); err != nil || len(ks) != 1 {
		t.Errorf("keys after the bad creates: %d (%v), want 1", len(ks), err)
	}
	if k := showKey(t, dir, id); len(k.AllowCIDRs) != 0 {
		t.Errorf("a refused update changed the key: %q", k.AllowCIDRs)
	}
}
