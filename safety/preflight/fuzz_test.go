package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadLimits: any /proc/<pid>/cgroup content gives limits or an
// error, never a panic, and never a path outside the cgroup root is read
// as a limit.
func FuzzReadLimits(f *testing.F) {
	for _, s := range []string{
		"0::/system.slice/warden.service\n",
		"4:memory:/box\n2:cpu,cpuacct:/box\n0::/\n",
		"12:memory:/../../etc\n",
		"0::/..\n", // the parent of the cgroup root
		"::\n:::\n0::\n",
		"",
	} {
		f.Add(s)
	}
	// A limit outside the cgroup root must never be reported.
	outside := f.TempDir()
	root := filepath.Join(outside, "cgroup")
	if err := os.MkdirAll(root, 0o700); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"memory.max", "memory.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(outside, name), []byte("666\n"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "cgroup")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := readLimits(p, root)
		if err == nil && l.version != "v1" && l.version != "v2" {
			t.Errorf("limits without a version: %+v", l)
		}
		if strings.Contains(l.memory, "666") {
			t.Errorf("read a limit outside the cgroup root: %+v", l)
		}
	})
}
