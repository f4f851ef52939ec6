package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestAllowlist(t *testing.T) {
	a, err := ParseAllowlist([]string{"llama3.2:*", "hf.co/bartowski/*", "warden-demo", "  Team/*:Q4  "})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		want bool
	}{
		{"llama3.2", true},
		{"llama3.2:3b", true},
		{"registry.ollama.ai/library/llama3.2:1b", true},
		{"LLAMA3.2:3B", true},
		{"llama3.1:8b", false},
		{"hf.co/bartowski/gemma:q4_k_m", true},
		{"hf.co/other/gemma:q4_k_m", false},
		{"warden-demo", true},
		{"warden-demo:latest", true},
		{"warden-demo:v2", false},
		{"team/x:q4", true},
		{"team/x:q8", false},
		{"evil.example/library/llama3.2:3b", false}, // another registry
		{"bad name!", false},
		{"", false},
	}
	for _, c := range cases {
		if got := a.Allowed(c.name); got != c.want {
			t.Errorf("Allowed(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	var empty Allowlist
	if !empty.Empty() || !empty.Allowed("anything:1b") {
		t.Error("an empty allowlist must allow every model")
	}
}

func TestParseAllowlistBadInput(t *testing.T) {
	for _, in := range [][]string{{""}, {"  "}, {"llama[3"}, {"bad name"}, {"a\\"}, {"x@sha256:abc"}, {strings.Repeat("a", 600)}} {
		if _, err := ParseAllowlist(in); err == nil {
			t.Errorf("ParseAllowlist(%q) accepted it", in)
		}
	}
}

func FuzzAllowlist(f *testing.F) {
	for _, s := range []string{"llama3.2:*", "hf.co/bartowski/*", "warden-demo", "[a-", "*/*/*:*", "a?b"} {
		f.Add(s, "llama3.2:3b")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		a, err := ParseAllowlist([]string{pattern})
		if err != nil {
			return
		}
		got := a.Allowed(name)
		if _, ok := Canonical(name); !ok && got {
			t.Fatalf("%q allows the malformed name %q", pattern, name)
		}
		if !strings.ContainsAny(pattern, `*?[\`) && got {
			c1, _ := Canonical(strings.ToLower(strings.TrimSpace(pattern)))
			c2, _ := Canonical(name)
			if c1 != c2 {
				t.Fatalf("plain pattern %q allows another model %q", pattern, name)
			}
		}
	})
}

func TestKeptName(t *testing.T) {
	d := "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"
	k, ok := KeptName("llama3.2:3b", "sha256:"+d)
	if !ok || k != "registry.ollama.ai/library/llama3.2:warden-v-a80c4f17acd5.3b" {
		t.Fatalf("KeptName = %q %v", k, ok)
	}
	if !IsKept(k) || IsKept("llama3.2:3b") {
		t.Error("IsKept wrong")
	}
	if got := keptOf(k); got != "registry.ollama.ai/library/llama3.2:3b" {
		t.Errorf("keptOf = %q", got)
	}
	long := strings.Repeat("t", 80)
	k, ok = KeptName("m:"+long, d)
	if !ok || !IsKept(k) || keptOf(k) != keptBase("m:"+long) {
		t.Errorf("a long tag: %q %v, base %q", k, ok, keptBase("m:"+long))
	}
	if _, ok := KeptName("m", "abc"); ok {
		t.Error("a short digest made a kept name")
	}
	if !SameDigest("sha256:"+d, d[:12]) || SameDigest(d, d[:11]) || SameDigest("", "") {
		t.Error("SameDigest wrong")
	}
}

func ggufHeader(magic string, version uint32, tensors, kvs uint64) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, version)
	binary.Write(&b, binary.LittleEndian, tensors)
	binary.Write(&b, binary.LittleEndian, kvs)
	return b.Bytes()
}

func TestCheckGGUF(t *testing.T) {
	demo, err := DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := CheckGGUF(bytes.NewReader(demo)); err != nil || v != 3 {
		t.Fatalf("the demo model: version %d, %v", v, err)
	}
	cases := map[string][]byte{
		"empty":       nil,
		"short":       []byte("GGUF"),
		"text":        []byte("this is not a model file, just some words in a row"),
		"ggml magic":  ggufHeader("GGML", 3, 1, 1),
		"version 1":   ggufHeader("GGUF", 1, 1, 1),
		"version 99":  ggufHeader("GGUF", 99, 1, 1),
		"no tensors":  ggufHeader("GGUF", 3, 0, 1),
		"huge counts": ggufHeader("GGUF", 3, 1<<40, 1),
		"huge kvs":    ggufHeader("GGUF", 2, 1, 1<<40),
	}
	for name, b := range cases {
		if _, err := CheckGGUF(bytes.NewReader(b)); !errors.Is(err, ErrNotGGUF) {
			t.Errorf("%s: %v, want ErrNotGGUF", name, err)
		}
	}
}

func FuzzCheckGGUF(f *testing.F) {
	f.Add(ggufHeader("GGUF", 3, 1, 1))
	f.Add(ggufHeader("GGUF", 2, 300, 20))
	f.Add([]byte("GGUF"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := CheckGGUF(bytes.NewReader(b))
		if err == nil && (v < 2 || v > 3 || !bytes.HasPrefix(b, []byte("GGUF"))) {
			t.Fatalf("accepted %x as GGUF version %d", b, v)
		}
	})
}

func TestGuard(t *testing.T) {
	db := storetest.Open(t)
	ctx := context.Background()
	allow, _ := ParseAllowlist([]string{"llama3.2:*", "m"})
	d1 := strings.Repeat("1", 64)
	d2 := strings.Repeat("2", 64)
	var alerts []Mismatch
	g := &Guard{Allow: allow, DB: db, Pins: map[string]string{"registry.ollama.ai/library/m:latest": "sha256:" + d1},
		OnMismatch: func(_ context.Context, m Mismatch) { alerts = append(alerts, m) }}
	if err := g.Check(ctx, Info{Name: "llama3.1:8b", Digest: d1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("outside the allowlist: %v, want ErrNotFound", err)
	}
	kept, _ := KeptName("llama3.2:3b", d1)
	if err := g.Check(ctx, Info{Name: kept, Digest: d1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a kept version: %v, want ErrNotFound", err)
	}
	if err := g.Check(ctx, Info{Name: "llama3.2:3b", Digest: d1}); err != nil {
		t.Errorf("allowed, unpinned: %v", err)
	}
	if err := g.Check(ctx, Info{Name: "m", Digest: d1}); err != nil {
		t.Errorf("config pin matches: %v", err)
	}
	for range 3 {
		if err := g.Check(ctx, Info{Name: "m:latest", Digest: d2}); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("config pin differs: %v, want ErrDigestMismatch", err)
		}
	}
	if len(alerts) != 1 || alerts[0].Pinned != d1 || alerts[0].Actual != d2 {
		t.Errorf("alerts = %+v, want one for %s != %s", alerts, d1, d2)
	}
	if n := g.Mismatches()["registry.ollama.ai/library/m:latest"]; n != 3 {
		t.Errorf("mismatches counted %d, want 3", n)
	}
	// A database pin takes precedence over the config's.
	if _, err := db.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, ?, 0, 'os:t')`, "registry.ollama.ai/library/m:latest", d2); err != nil {
		t.Fatal(err)
	}
	g.Invalidate()
	if err := g.Check(ctx, Info{Name: "m", Digest: d2}); err != nil {
		t.Errorf("database pin matches: %v", err)
	}
}

func TestVerifyBlob(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		t.Fatal(err)
	}
	content := []byte("some blob content")
	d := "sha256:" + sha256hex(content)
	p, _ := s.BlobPath(d)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	l := Layer{Digest: d, Size: int64(len(content))}
	if c := s.VerifyBlob(l, nil); c.State != BlobOK {
		t.Fatalf("intact blob: %+v", c)
	}
	content[3] ^= 0xff
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := s.VerifyBlob(l, nil); c.State != BlobCorrupted || c.Got == "" {
		t.Fatalf("flipped byte: %+v", c)
	}
	os.Remove(p)
	if c := s.VerifyBlob(l, nil); c.State != BlobMissing {
		t.Fatalf("missing blob: %+v", c)
	}
	if c := s.VerifyBlob(Layer{Digest: "sha256:../../etc/passwd"}, nil); c.State != BlobCorrupted {
		t.Fatalf("bad digest: %+v", c)
	}
}

func TestSPDXGuess(t *testing.T) {
	cases := map[string]string{
		"                                 Apache License\n                           Version 2.0, January 2004": "Apache-2.0",
		"MIT License\n\nCopyright (c) 2024":                        "MIT",
		"LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version": "LicenseRef-Llama-3.2-Community",
		"Gemma Terms of Use":                                       "LicenseRef-Gemma",
		"all rights reserved":                                      "",
	}
	for text, want := range cases {
		if got := SPDXGuess(text); got != want {
			t.Errorf("SPDXGuess(%.30q) = %q, want %q", text, got, want)
		}
	}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestReplaceManifest(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	write := func(name, content string) string {
		n := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", "m", name)
		if err := os.MkdirAll(filepath.Dir(n), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		return n
	}
	write("warden-v-aaaaaaaaaaaa.latest", `{"layers":[]}`)
	dst := write("latest", `{"layers":[{"digest":"x"}]}`)
	ok, err := s.ReplaceManifest("m:warden-v-aaaaaaaaaaaa.latest", "m")
	if err != nil || !ok {
		t.Fatalf("ReplaceManifest: %v %v", ok, err)
	}
	b, _ := os.ReadFile(dst)
	fi, _ := os.Stat(dst)
	if string(b) != `{"layers":[]}` || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after replace: %q mode %v", b, fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 2 {
		t.Fatalf("temp files left: %v", entries)
	}
	if ok, err := s.ReplaceManifest("m:warden-v-aaaaaaaaaaaa.latest", "other"); ok || err != nil {
		t.Fatalf("a missing destination: %v %v, want not ok and no error", ok, err)
	}
}
