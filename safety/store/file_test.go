package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// leftovers lists dir's entries other than want.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, e := range ents {
		if !slices.Contains(want, e.Name()) {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

func TestWriteFileAtomicReplacesWholeFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"first, the longer one\n", "second\n"} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatalf("WriteFileAtomic: %v", err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("file = %q, %v; want %q", got, err, content)
		}
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o640 {
		t.Errorf("mode = %v, want 0640", got)
	}
	if extra := leftovers(t, dir, "f"); len(extra) != 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestWriteFileAtomicFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory cannot be replaced by a file: the rename fails.
	if err := WriteFileAtomic(dir, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFileAtomic over a directory succeeded")
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFileAtomic into a missing directory succeeded")
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("old file = %q, want it untouched", got)
	}
	if extra := leftovers(t, dir, "f"); len(extra) != 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestCreateKeyFileRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := CreateKeyFile(p, []byte("secret-1")); err != nil {
		t.Fatalf("CreateKeyFile: %v", err)
	}
	err := CreateKeyFile(p, []byte("secret-2"))
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateKeyFile = %v, want ErrExist", err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "secret-1" {
		t.Errorf("key = %q, %v; want the first one kept", got, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if extra := leftovers(t, dir, "key"); len(extra) != 0 {
		t.Errorf("left behind: %v", extra)
	}
}
