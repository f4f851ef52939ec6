//go:build eval

package classifier

import (
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/testenv"
)

// TestHeldoutScores re-scores every source of model.json, the public ones
// included, and checks the embedded model finds exactly the recorded
// numbers. The public sets are other projects' data, which this repository
// names but does not copy: `make eval` runs this with them in
// ../shared/injection-data (or $WARDEN_SHARED_DATA/injection-data).
func TestHeldoutScores(t *testing.T) {
	r := readRecord(t)
	dirs := []string{repoData, testenv.SharedData(t, "injection-data")}
	if n := checkScores(t, r, dirs, func(string) bool { return true }); n != len(r.Sources) {
		t.Errorf("re-scored %d of %d sources", n, len(r.Sources))
	}
	public := 0
	for _, s := range r.Sources {
		if !strings.Contains(s.Repo, "warden-llm/warden") {
			public++
		}
	}
	if public == 0 {
		t.Error("model.json names no public source")
	}
}
