package ollama

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MinPathVersion is the oldest `ollama` found on PATH that Warden will run;
// older builds lack fixes Warden relies on. A self-built bin/ollama is
// pinned by go.mod instead.
const MinPathVersion = "0.17.1"

// Finder locates the ollama binary. The zero value is not useful; use
// NewFinder, which fills the fields from the real system.
type Finder struct {
	// LookPath finds a command on PATH (exec.LookPath).
	LookPath func(string) (string, error)
	// Version reports a binary's version.
	Version func(ctx context.Context, bin string) (string, error)
	// ExeDir is the folder of the running warden binary.
	ExeDir string
}

// NewFinder returns a Finder for this system.
func NewFinder() (*Finder, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate warden binary: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return &Finder{LookPath: exec.LookPath, Version: BinaryVersion, ExeDir: filepath.Dir(exe)}, nil
}

// Find returns the binary to run: configured if set; else `ollama` on PATH
// when its version is at least MinPathVersion (an official GPU build on a
// real box); else bin/ollama next to the warden binary (or ollama beside it
// when warden itself lives in bin/). Never the working directory.
func (f *Finder) Find(ctx context.Context, configured string) (string, error) {
	if configured != "" {
		if !filepath.IsAbs(configured) {
			return "", fmt.Errorf("runtime.ollama_bin must be an absolute path, got %q", configured)
		}
		if err := executable(configured); err != nil {
			return "", fmt.Errorf("runtime.ollama_bin: %w", err)
		}
		return configured, nil
	}
	var tried []string
	if p, err := f.LookPath("ollama"); err == nil && filepath.IsAbs(p) {
		v, verr := f.Version(ctx, p)
		switch {
		case verr != nil:
			tried = append(tried, fmt.Sprintf("%s (version unknown: %v)", p, verr))
		case !VersionAtLeast(v, MinPathVersion):
			tried = append(tried, fmt.Sprintf("%s (version %s < %s)", p, v, MinPathVersion))
		default:
			return p, nil
		}
	}
	for _, p := range []string{filepath.Join(f.ExeDir, "bin", "ollama"), filepath.Join(f.ExeDir, "ollama")} {
		if executable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no usable ollama binary (tried %s): set runtime.ollama_bin, or run `make backend`", strings.Join(tried, ", "))
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

var versionRE = regexp.MustCompile(`version is (\S+)`)

// BinaryVersion runs `bin --version` in a clean environment and parses the
// version it prints ("ollama version is 0.17.4", or "client version is
// 0.17.4" when no server is running).
func BinaryVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	// An unreachable loopback port: the version query must not touch a
	// server, and no proxy or debug setting is inherited.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OLLAMA_HOST=127.0.0.1:1", "HOME=" + os.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	m := versionRE.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return "", fmt.Errorf("%s --version: no version in %q", bin, bytes.TrimSpace(out))
	}
	return string(m[len(m)-1][1]), nil
}

// VersionAtLeast compares dotted versions ("0.17.4", "v0.17.4-rc1");
// pre-release suffixes are ignored. An unparsable version is never enough.
func VersionAtLeast(v, min string) bool {
	a, err := parseVersion(v)
	if err != nil {
		return false
	}
	b, err := parseVersion(min)
	if err != nil {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return true
}

func parseVersion(v string) ([3]int, error) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) == 0 || len(parts) > 3 {
		return out, errors.New("bad version")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, errors.New("bad version")
		}
		out[i] = n
	}
	return out, nil
}
