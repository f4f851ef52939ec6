package store

import (
	"os"
	"path/filepath"
	"testing"
)

// A data dir left open to other users (0755, 0777) and files in it that
// are group or world readable are made private at Open; a dir that only
// lets the backend's group traverse it keeps that bit.
func TestOpenTightensLooseDataDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dirMode os.FileMode
		want    os.FileMode
	}{
		{"0755", 0o755, 0o700},
		{"0777", 0o777, 0o700},
		{"0750", 0o750, 0o700},
		{"0711", 0o711, 0o710},
		{"0710 kept", 0o710, 0o710},
		{"0700 kept", 0o700, 0o700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			loose := filepath.Join(dir, "admin.key")
			if err := os.WriteFile(loose, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			// Chmod, not the create mode: the umask would mask it.
			if err := os.Chmod(loose, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			db, err := Open(t.Context(), dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != tc.want {
				t.Errorf("data dir mode %v, want %v", got, tc.want)
			}
			fst, err := os.Stat(loose)
			if err != nil {
				t.Fatal(err)
			}
			if got := fst.Mode().Perm(); got != 0o600 {
				t.Errorf("admin.key mode %v, want 0600", got)
			}
		})
	}
}
