//go:build eval

package secret

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/testenv"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

// TestRealWorld scores the detector on real code and config files taken
// from public repositories, which this repository names but does not copy:
// `make eval` runs it with them in ../shared/secret-realworld (or
// $WARDEN_SHARED_DATA/secret-realworld;
// testdata/realworld/PROVENANCE.md names each file's source and licence):
// every line of them is a negative, except the few listed in
// testdata/realworld/positives.txt as "path:line" (hard-coded credentials
// the files really hold). The positives are the secret corpus's "+" lines
// and the realworld positives. Precision must reach 0.95 and recall 0.95.
func TestRealWorld(t *testing.T) {
	d := New()
	dir := filepath.Join("testdata", "realworld")
	filesDir := filepath.Join(testenv.SharedData(t, "secret-realworld"), "files")
	labelled := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "positives.txt")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
				labelled[l] = true
			}
		}
	} else {
		t.Fatal(err)
	}
	var tp, fp, fn, negatives, files int
	err := filepath.WalkDir(filesDir, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filesDir, path)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			key := fmt.Sprintf("%s:%d", filepath.ToSlash(rel), n)
			found := len(detecttest.Whole(d, sc.Bytes())) > 0
			switch want := labelled[key]; {
			case want && found:
				tp++
			case want:
				fn++
				t.Logf("%s: missed %q", key, sc.Text())
			case found:
				fp++
				negatives++
				t.Logf("%s: false positive %q", key, sc.Text())
			default:
				negatives++
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range detecttest.ReadCorpus(t, filepath.Join("testdata", "corpus", "secret.txt")) {
		if !ex.Want {
			continue
		}
		if len(detecttest.Whole(d, []byte(ex.Text))) > 0 {
			tp++
		} else {
			fn++
		}
	}
	precision := float64(tp) / float64(max(1, tp+fp))
	recall := float64(tp) / float64(max(1, tp+fn))
	fmt.Printf("realworld secret: %d files, %d negative lines, %d false positives, %d positives, precision %.3f recall %.3f\n",
		files, negatives, fp, tp+fn, precision, recall)
	if files < 100 || negatives < 10000 {
		t.Errorf("negative set too small: %d files, %d lines", files, negatives)
	}
	if precision < 0.95 || recall < 0.95 {
		t.Errorf("precision %.3f recall %.3f below 0.95/0.95", precision, recall)
	}
}
