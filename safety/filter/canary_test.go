package filter

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestCanaryKey(t *testing.T) {
	dir := t.TempDir()
	a, err := CanaryKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 {
		t.Fatalf("key of %d bytes", len(a))
	}
	b, err := CanaryKey(dir)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("second read: %v, same key %v", err, bytes.Equal(a, b))
	}
	path := filepath.Join(dir, CanaryKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CanaryKey(dir); err == nil {
		t.Error("a key file of the wrong size was accepted")
	}
}
