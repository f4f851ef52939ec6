package classifier

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/testenv"
	"github.com/warden-llm/warden/safety/detect/classifier/dataset"
)

// repoData holds the sources written in this repository; the public ones
// are in ../shared/injection-data beside the clone (see
// scripts/train-injection/data/README.md).
const repoData = "../../../scripts/train-injection/data"

// record is model.json as the trainer wrote it.
type record struct {
	Threshold float64 `json:"threshold"`
	Params    struct {
		Heldout []string `json:"heldout"`
		Seed    uint64   `json:"seed"`
		Split   float64  `json:"split"`
	} `json:"params"`
	Sources []struct {
		Name    string `json:"name"`
		Licence string `json:"licence"`
		Repo    string `json:"repo"`
		Commit  string `json:"commit"`
		SHA256  string `json:"sha256"`
	} `json:"sources"`
	Metrics []dataset.Metric `json:"metrics"`
	Totals  []dataset.Metric `json:"totals"`
}

func readRecord(t *testing.T) record {
	t.Helper()
	var r record
	if err := json.Unmarshal(provenance, &r); err != nil {
		t.Fatalf("model.json: %v", err)
	}
	return r
}

// TestProvenanceFloors: the numbers the model was shipped with meet the
// issue's goal, and every source names its licence and commit.
func TestProvenanceFloors(t *testing.T) {
	r := readRecord(t)
	for _, s := range r.Sources {
		if s.Licence == "" || s.Repo == "" || s.SHA256 == "" {
			t.Errorf("source %s: missing licence, repo or hash", s.Name)
		}
		if !strings.Contains(s.Repo, "warden-llm/warden") && len(s.Commit) != 40 {
			t.Errorf("source %s: commit %q is not a full hash", s.Name, s.Commit)
		}
	}
	for _, m := range r.Totals {
		switch {
		case m.Set == "unseen" && (m.Recall < 0.80 || m.FPRate > 0.01):
			t.Errorf("unseen sources: recall %.3f, false positives %.4f; want ≥ 0.80 at ≤ 0.01", m.Recall, m.FPRate)
		case m.Set == "split" && (m.Recall < 0.90 || m.FPRate > 0.01):
			t.Errorf("held-out split: recall %.3f, false positives %.4f; want ≥ 0.90 at ≤ 0.01", m.Recall, m.FPRate)
		}
		if m.Attacks < 100 || m.Benign < 200 {
			t.Errorf("%s: %d attacks and %d benign prompts are too few to state a rate", m.Set, m.Attacks, m.Benign)
		}
	}
}

// TestHeldoutScores re-scores the held-out split and the unseen sources
// with the embedded model and checks it finds exactly the numbers in
// model.json: the sources written here and the public ones, kept in
// ../shared/injection-data beside the clone (testenv.SharedData).
func TestHeldoutScores(t *testing.T) {
	r := readRecord(t)
	dirs := []string{repoData, testenv.SharedData(t, "injection-data")}
	srcs, err := dataset.Load(dirs, r.Params.Heldout, r.Params.Seed, r.Params.Split)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dataset.Source{}
	for _, s := range srcs {
		byName[s.Name] = s
	}
	want := map[string]dataset.Metric{}
	for _, m := range r.Metrics {
		want[m.Source] = m
	}
	for _, rs := range r.Sources {
		t.Run(rs.Name, func(t *testing.T) {
			s := byName[rs.Name]
			if s == nil {
				// The public sets are not in the repository (see the data
				// README) but in ../shared/injection-data: all must be there.
				t.Fatalf("source %s is neither in %s nor in the shared injection-data", rs.Name, repoData)
			}
			if s.SHA256 != rs.SHA256 {
				t.Fatalf("%s: file hash %s, model.json says %s: not the data the model was measured on", rs.Name, s.SHA256, rs.SHA256)
			}
			got := dataset.Metrics(Embedded(), []*dataset.Source{s}, r.Threshold)[0]
			if got != want[rs.Name] {
				t.Errorf("%s: got %+v, model.json says %+v", rs.Name, got, want[rs.Name])
			}
		})
	}
	if _, err := os.Stat(filepath.Join(repoData, "README.md")); err != nil {
		t.Errorf("the data directory has no README naming its sources: %v", err)
	}
}
