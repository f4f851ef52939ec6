package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/keys"
)

// showKey reads key id back through `keys show --json`.
func showKey(t *testing.T, dataDir, id string) keys.Key {
	t.Helper()
	out, err := runCLI(t, dataDir, "keys", "show", id, "--json")
	if err != nil {
		t.Fatalf("keys show: %v", err)
	}
	var k keys.Key
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("keys show: %v in %q", err, out)
	}
	return k
}

// TestKeysUpdate: `keys update` changes only the flags given, and
// `set-limits` is the same command under its old name.
func TestKeysUpdate(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, dir, "keys", "create", "--name", "team", "--rpm", "5", "--tpm", "100", "--weight", "3", "--json")
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("keys create printed %q (%v), want an id", out, err)
	}

	if _, err := runCLI(t, dir, "keys", "update", created.ID, "--tpm", "1000", "--weight", "7"); err != nil {
		t.Fatalf("keys update: %v", err)
	}
	want := keys.Limits{RPM: 5, TPM: 1000}
	if k := showKey(t, dir, created.ID); k.Limits != want || k.Weight != 7 {
		t.Errorf("after update: limits %+v weight %d, want %+v, 7", k.Limits, k.Weight, want)
	}

	if _, err := runCLI(t, dir, "keys", "set-limits", created.ID, "--rpm", "9"); err != nil {
		t.Fatalf("keys set-limits: %v", err)
	}
	want.RPM = 9
	if k := showKey(t, dir, created.ID); k.Limits != want || k.Weight != 7 {
		t.Errorf("after set-limits: limits %+v weight %d, want %+v, 7", k.Limits, k.Weight, want)
	}
}

// TestKeysUpdateRefusals: bad flags and unknown ids are errors with a
// message, and change nothing.
func TestKeysUpdateRefusals(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, dir, "keys", "create", "--name", "team", "--rpm", "5", "--json")
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	before := showKey(t, dir, created.ID)
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"keys", "update", "nosuchkey123", "--rpm", "3"}, "no key with id"},
		{[]string{"keys", "set-limits", "nosuchkey123", "--rpm", "3"}, "no key with id"},
		{[]string{"keys", "update", created.ID, "--rpm", "-1"}, "negative"},
		{[]string{"keys", "update", created.ID, "--weight", "0"}, "weight"},
		{[]string{"keys", "update", created.ID, "--profile", "nosuchprofile"}, "not defined"},
		{[]string{"keys", "update", created.ID, "--rpm", "lots"}, "invalid argument"},
		{[]string{"keys", "update"}, "accepts 1 arg"},
	} {
		if _, err := runCLI(t, dir, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("warden %v = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if k := showKey(t, dir, created.ID); k.Limits != before.Limits || k.Weight != before.Weight || k.Profile != before.Profile {
		t.Errorf("refused updates changed the key: %+v, was %+v", k, before)
	}
}
