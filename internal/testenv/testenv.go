// Package testenv decides what a test does when the machine lacks an
// external program it needs (the real Ollama, rsyslogd, openssl): under
// -short (make unit) it skips; otherwise it skips naming `make test`, unless
// CI or WARDEN_TEST_OLLAMA is set, when it fails, so a CI run never passes by
// skipping.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
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

// SharedData returns the directory of a public data set kept beside the
// repository in ../shared/name: the data sets other projects published,
// which this repository names with their source and licence but does not
// copy. WARDEN_SHARED_DATA names another folder holding them. Only the
// tests built with the eval tag (`make eval`) read them; without the data
// such a test fails: `make eval` is run on purpose.
func SharedData(t testing.TB, name string) string {
	t.Helper()
	base := os.Getenv("WARDEN_SHARED_DATA")
	if base == "" {
		root, err := ModuleRoot()
		if err != nil {
			t.Fatalf("the shared data folder: %v", err)
		}
		base = filepath.Join(filepath.Dir(root), "shared")
	}
	dir := filepath.Join(base, name)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("public data set %s is not in %s (%v): put it there or point WARDEN_SHARED_DATA at its folder (docs/development.md)", name, base, err)
	}
	return dir
}

// ModuleRoot is the nearest folder above the test's working directory (its
// package's folder) holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = up
	}
}
