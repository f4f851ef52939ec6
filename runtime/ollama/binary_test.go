package ollama

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/runtime/ollama/ollamatest"
)

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		v, min string
		want   bool
	}{
		{"0.17.4", "0.17.1", true},
		{"0.17.1", "0.17.1", true},
		{"0.17.0", "0.17.1", false},
		{"v0.18.0-rc1", "0.17.1", true},
		{"0.9.9", "0.17.1", false},
		{"1.0", "0.17.1", true},
		{"0.0.0", "0.17.1", false},
		{"garbage", "0.17.1", false},
		{"", "0.17.1", false},
	}
	for _, tt := range tests {
		if got := VersionAtLeast(tt.v, tt.min); got != tt.want {
			t.Errorf("VersionAtLeast(%q, %q) = %v, want %v", tt.v, tt.min, got, tt.want)
		}
	}
}

func TestFinder(t *testing.T) {
	dir := t.TempDir()
	exeDir := filepath.Join(dir, "warden")
	mk := func(p string) string {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	onPath := mk(filepath.Join(dir, "usr", "bin", "ollama"))
	beside := mk(filepath.Join(exeDir, "bin", "ollama"))
	configured := mk(filepath.Join(dir, "opt", "ollama"))
	notFound := func(string) (string, error) { return "", errors.New("not found") }
	found := func(string) (string, error) { return onPath, nil }
	version := func(v string) func(context.Context, string) (string, error) {
		return func(context.Context, string) (string, error) { return v, nil }
	}
	tests := []struct {
		name       string
		f          Finder
		configured string
		want       string
		wantErr    string
	}{
		{"configured wins", Finder{LookPath: found, Version: version("0.17.4"), ExeDir: exeDir}, configured, configured, ""},
		{"configured must be absolute", Finder{LookPath: found, Version: version("0.17.4"), ExeDir: exeDir}, "ollama", "", "absolute"},
		{"configured must exist", Finder{LookPath: found, Version: version("0.17.4"), ExeDir: exeDir}, "/no/such/ollama", "", "runtime.ollama_bin"},
		{"new enough on PATH", Finder{LookPath: found, Version: version("0.17.4"), ExeDir: exeDir}, "", onPath, ""},
		{"too old on PATH", Finder{LookPath: found, Version: version("0.5.0"), ExeDir: exeDir}, "", beside, ""},
		{"none on PATH", Finder{LookPath: notFound, Version: version("0.17.4"), ExeDir: exeDir}, "", beside, ""},
		{"nothing anywhere", Finder{LookPath: notFound, Version: version("0.17.4"), ExeDir: filepath.Join(dir, "empty")}, "", "", "make backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.Find(t.Context(), tt.configured)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Find = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestBinaryVersionReal reads the version of the real bin/ollama, which
// `make backend` stamps (a plain build would say 0.0.0).
func TestBinaryVersionReal(t *testing.T) {
	bin := ollamatest.Binary(t)
	v, err := BinaryVersion(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if !VersionAtLeast(v, MinPathVersion) {
		t.Errorf("bin/ollama reports version %q, want ≥ %s (is the version stamped?)", v, MinPathVersion)
	}
}
