package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/testenv"
)

// TestE2EBackendIsolated: a root `warden serve` says which isolation is in
// force, and the child's address it records is not reachable from the
// host's network namespace (where every other local user is), while Warden
// serves a chat through it; models/ is 0700.
func TestE2EBackendIsolated(t *testing.T) {
	testenv.NeedRoot(t, "the child's own network namespace")
	w := sharedWarden(t)
	if !strings.Contains(w.log.String(), `isolation="netns, user warden-ollama`) {
		t.Errorf("serve did not log netns isolation with its own user:\n%s", w.log.String())
	}
	b, err := os.ReadFile(filepath.Join(w.dataDir, backendFile))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", u.Host); err == nil {
		c.Close()
		t.Errorf("connected to the child at %s from the host's network namespace", u.Host)
	}
	if st, _, _ := w.post(t, "/v1/chat/completions", "application/json",
		`{"model":"warden-demo","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`); st != 200 {
		t.Errorf("chat through warden: %d, want 200", st)
	}
	fi, err := os.Stat(w.models)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("models dir: %v %v, want 0700", fi, err)
	}
}
