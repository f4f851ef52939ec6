package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// runCLI runs the root command in process against dataDir with an empty
// environment (no WARDEN_* from the test's), as the binary would with these
// arguments, and returns its stdout and error.
func runCLI(t *testing.T, dataDir string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout, &stderr, func(string) string { return "" })
	root.SetArgs(append(args, "--data-dir", dataDir))
	err := root.ExecuteContext(t.Context())
	return stdout.String(), err
}

// The key commands only touch SQLite: they run in process on a temp data
// dir, no server or backend needed.
func TestKeysCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	count := func() int {
		out, err := runCLI(t, dir, "keys", "list", "--json")
		if err != nil {
			t.Fatalf("keys list: %v", err)
		}
		var ks []json.RawMessage
		if err := json.Unmarshal([]byte(out), &ks); err != nil {
			t.Fatalf("keys list --json: %v in %q", err, out)
		}
		return len(ks)
	}
	if _, err := runCLI(t, dir, "keys", "create", "--name", "first"); err != nil {
		t.Fatalf("keys create: %v", err)
	}
	before := count()
	if before != 1 {
		t.Fatalf("%d keys after one create", before)
	}
	for _, args := range [][]string{
		{"keys", "create", "--name", "x", "--expires", "soon"},
		{"keys", "create", "--name", "x", "--rpm", "-1"},
		{"keys", "create", "--name", "x", "--scopes", "root"},
		{"keys", "create"},
		{"keys", "revoke", "nosuchkey123"},
		{"keys", "rotate", "nosuchkey123"},
		{"keys", "show", "nosuchkey123"},
		{"keys", "set-limits", "nosuchkey123", "--rpm", "3"},
	} {
		_, err := runCLI(t, dir, args...)
		if err == nil || err.Error() == "" {
			t.Errorf("warden %v: no error", args)
			continue
		}
		if strings.Contains(strings.Join(args, " "), "nosuchkey") && !strings.Contains(err.Error(), "no key with id") {
			t.Errorf("warden %v: %q, want a clear unknown-id message", args, err)
		}
	}
	if after := count(); after != before {
		t.Errorf("refused commands changed the key count from %d to %d", before, after)
	}
}
