package server

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestConvertGolden converts each testdata/convert/*.in.json request to the
// backend request Warden sends Ollama and compares it with the .golden file
// beside it. Run `go test ./server -run ConvertGolden -update` after an
// intended change and review the diff.
func TestConvertGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/convert/*.in.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var out any
			switch {
			case strings.HasPrefix(name, "chat_"):
				var req chatRequest
				if err := unmarshalBody(body, &req); err != nil {
					t.Fatal(err)
				}
				if err := req.validate(); err != nil {
					t.Fatal(err)
				}
				out, err = req.toAPI("demo:latest", capOf(req.maxTokens()))
			case strings.HasPrefix(name, "completion_"):
				var req completionRequest
				if err := unmarshalBody(body, &req); err != nil {
					t.Fatal(err)
				}
				prompt, verr := req.validate()
				if verr != nil {
					t.Fatal(verr)
				}
				out, err = req.toAPI("demo:latest", prompt, capOf(req.MaxTokens))
			default:
				t.Fatalf("unknown golden kind %s", name)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".in.json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("backend request differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// capOf is the output cap admit gives a request without key limits.
func capOf(stated *int) int {
	if stated != nil {
		return *stated
	}
	return 2048
}
