package probe

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

//go:embed suites/*.jsonl
var builtinFS embed.FS

// DefaultSuite is the suite a run uses when none is named: every built-in
// category.
const DefaultSuite = "all"

// Builtins names the built-in suites: one per category, and "all".
func Builtins() []string {
	ents, _ := builtinFS.ReadDir("suites")
	out := []string{DefaultSuite}
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".jsonl"))
	}
	return out
}

// Load returns the built-in suite called name ("all", "bias",
// "overrefusal", "harmful", "injection", "leakage"), or else parses the
// file at name (a probe JSONL or a BBQ JSONL).
func Load(name string) (Suite, error) {
	if name == "" {
		name = DefaultSuite
	}
	if slices.Contains(Builtins(), name) {
		return builtin(name)
	}
	f, err := os.Open(name)
	if err != nil {
		if os.IsNotExist(err) && !strings.ContainsAny(name, "/.") {
			return Suite{}, fmt.Errorf("no built-in suite %q (built-in: %s) and no such file", name, strings.Join(Builtins(), ", "))
		}
		return Suite{}, fmt.Errorf("open suite: %w", err)
	}
	defer f.Close()
	return Parse(name, f)
}

func builtin(name string) (Suite, error) {
	var files []string
	if name == DefaultSuite {
		for _, n := range Builtins()[1:] {
			files = append(files, n+".jsonl")
		}
	} else {
		files = []string{name + ".jsonl"}
	}
	var rs []io.Reader
	for _, f := range files {
		b, err := builtinFS.ReadFile(path.Join("suites", f))
		if err != nil {
			return Suite{}, err
		}
		rs = append(rs, bytes.NewReader(b))
	}
	return Parse("builtin:"+name, io.MultiReader(rs...))
}
