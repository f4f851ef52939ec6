// Package testenv decides what a test does when the machine lacks an
// external program it needs (the real Ollama, rsyslogd, openssl): under
// -short (make unit) it skips; otherwise it skips naming `make test`, unless
// CI or WARDEN_TEST_OLLAMA is set, when it fails, so a CI run never passes by
// skipping.
package testenv

import (
	"os"
	"testing"
)

// NeedExternal skips t under -short: it needs a program make unit does not
// provide.
func NeedExternal(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: skipped with -short; run `make test`", what)
	}
}

// Missing ends a test that lacks what it needs: a failure when CI or
// WARDEN_TEST_OLLAMA is set (the run was meant to have it), a skip naming
// `make test` otherwise.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" || os.Getenv("WARDEN_TEST_OLLAMA") != "" {
		t.Fatalf("%s is needed (%v): run `make test`, which installs and builds it", what, err)
	}
	t.Skipf("%s is missing (%v): run `make test` to install and build it and run this test", what, err)
}

// NeedRoot ends a test that needs root (network namespaces, other uids):
// a failure under CI, which runs as root, a skip with the reason otherwise.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("needs root (%s); CI runs the tests as root", why)
	}
	t.Skipf("needs root (%s): run it as root, as CI does", why)
}
