package classifier

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect/classifier/dataset"
)

// repoData holds the sources written in this repository; the public ones
// are not in it (see scripts/train-injection/data/README.md and
// heldout_eval_test.go).
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

// TestRepoSourceScores re-scores the sources written in this repository
// (scripts/train-injection/data) with the embedded model and checks it
// finds exactly the numbers in model.json. The public sources are re-scored
// by TestHeldoutScores under `make eval`, where their data is.
func TestRepoSourceScores(t *testing.T) {
	r := readRecord(t)
	n := 0
	for _, rs := range r.Sources {
		if strings.Contains(rs.Repo, "warden-llm/warden") {
			n++
		}
	}
	if got := checkScores(t, r, []string{repoData}, func(repo string) bool {
		return strings.Contains(repo, "warden-llm/warden")
	}); got != n || n == 0 {
		t.Errorf("re-scored %d of the %d sources written here", got, n)
	}
	if _, err := os.Stat(filepath.Join(repoData, "README.md")); err != nil {
		t.Errorf("the data directory has no README naming its sources: %v", err)
	}
}

// checkScores loads the sources in dirs and, for each source of model.json
// that want selects by its repository, checks the file is the one the
// model was measured on and that the embedded model scores it as recorded.
// It returns how many sources it checked.
func checkScores(t *testing.T, r record, dirs []string, want func(repo string) bool) int {
	t.Helper()
	srcs, err := dataset.Load(dirs, r.Params.Heldout, r.Params.Seed, r.Params.Split)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dataset.Source{}
	for _, s := range srcs {
		byName[s.Name] = s
	}
	recorded := map[string]dataset.Metric{}
	for _, m := range r.Metrics {
		recorded[m.Source] = m
	}
	n := 0
	for _, rs := range r.Sources {
		if !want(rs.Repo) {
			continue
		}
		n++
		t.Run(rs.Name, func(t *testing.T) {
			s := byName[rs.Name]
			if s == nil {
				t.Fatalf("source %s is in none of %s", rs.Name, strings.Join(dirs, ", "))
			}
			if s.SHA256 != rs.SHA256 {
				t.Fatalf("%s: file hash %s, model.json says %s: not the data the model was measured on", rs.Name, s.SHA256, rs.SHA256)
			}
			got := dataset.Metrics(Embedded(), []*dataset.Source{s}, r.Threshold)[0]
			if got != recorded[rs.Name] {
				t.Errorf("%s: got %+v, model.json says %+v", rs.Name, got, recorded[rs.Name])
			}
		})
	}
	return n
}
