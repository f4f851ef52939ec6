package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/dataset"
)

type datasetOut struct {
	dataset.Report
	Violations []string `json:"violations"`
}

func runDatasetCheck(t *testing.T, args ...string) (datasetOut, error) {
	t.Helper()
	out, err := runCLI(t, t.TempDir(), append([]string{"dataset", "check", "--json"}, args...)...)
	var got datasetOut
	if jerr := json.Unmarshal([]byte(out), &got); jerr != nil {
		t.Fatalf("output is not JSON: %v\n%s", jerr, out)
	}
	return got, err
}

// testdata/dataset/train.jsonl has 13 records and 2 malformed lines
// (10, 15); line 4 repeats line 1 exactly, line 8 nearly repeats line 2;
// an email on line 6, an AWS key on line 9, a phone number on line 13;
// labels 12 "info" to 1 "complaint".
func TestDatasetCheckFixtures(t *testing.T) {
	got, err := runDatasetCheck(t, "--label-field", "label", "--manifest", "testdata/dataset/train.manifest.toml", "testdata/dataset/train.jsonl")
	if !errors.Is(err, errDatasetThresholds) {
		t.Fatalf("err %v, want errDatasetThresholds", err)
	}
	if got.Records != 13 || got.Malformed != 2 || len(got.Errors) != 2 || got.Errors[0].Line != 10 || got.Errors[1].Line != 15 {
		t.Errorf("records %d, malformed %d %v", got.Records, got.Malformed, got.Errors)
	}
	if got.ExactDuplicates != 1 || got.NearDuplicates != 1 ||
		!reflect.DeepEqual(got.Duplicates, []dataset.Duplicate{{Line: 4, Of: 1}, {Line: 8, Of: 2}}) {
		t.Errorf("duplicates: %d exact, %d near, %v", got.ExactDuplicates, got.NearDuplicates, got.Duplicates)
	}
	lines := map[string][]int{}
	for c, s := range got.SensitiveByCategory {
		lines[c] = s.Lines
	}
	if want := map[string][]int{"email": {6}, "secret": {9}, "phone": {13}}; !reflect.DeepEqual(lines, want) || got.SensitiveRecords != 3 {
		t.Errorf("sensitive %v (%d records), want %v", lines, got.SensitiveRecords, want)
	}
	if got.Labels["info"] != 12 || got.Labels["complaint"] != 1 || got.LabelRatio != 12 {
		t.Errorf("labels %v ratio %v", got.Labels, got.LabelRatio)
	}
	if got.MainLanguage != "en" || got.Manifest == nil || !got.Manifest.HashMatch || len(got.Manifest.Problems) != 0 {
		t.Errorf("language %s, manifest %+v", got.MainLanguage, got.Manifest)
	}
	joined := strings.Join(got.Violations, "\n")
	for _, want := range []string{"exact duplicates", "near duplicates", "PII or secrets", "label ratio 12.0"} {
		if !strings.Contains(joined, want) {
			t.Errorf("violations lack %q:\n%s", want, joined)
		}
	}
	// The report never holds the records' text.
	b, _ := json.Marshal(got)
	for _, secret := range []string{"orders.desk@example.com", "AKIAQ3EGRTW7XK5NZP4M", "555 0147"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the report holds %q", secret)
		}
	}
	// Flags loosen the thresholds: then it passes.
	_, err = runDatasetCheck(t, "--label-field", "label", "--max-duplicate-rate", "0.1", "--max-near-duplicate-rate", "0.1",
		"--max-sensitive-rate", "0.5", "--max-label-ratio", "20", "testdata/dataset/train.jsonl")
	if err != nil {
		t.Errorf("loosened thresholds: %v", err)
	}
}

func TestDatasetCheckManifestHashMismatch(t *testing.T) {
	got, err := runDatasetCheck(t, "--manifest", "testdata/dataset/wrong-hash.manifest.toml", "testdata/dataset/clean.jsonl")
	if !errors.Is(err, dataset.ErrHashMismatch) {
		t.Fatalf("err %v, want ErrHashMismatch", err)
	}
	if got.Manifest == nil || got.Manifest.HashMatch || !strings.Contains(strings.Join(got.Manifest.Problems, ";"), "does not match") {
		t.Errorf("manifest %+v", got.Manifest)
	}
}

func TestDatasetCheckClean(t *testing.T) {
	got, err := runDatasetCheck(t, "--label-field", "label", "--min-language-share", "0.5", "testdata/dataset/clean.jsonl")
	if err != nil {
		t.Fatalf("clean dataset: %v (%v)", err, got.Violations)
	}
	if got.Records != 6 || got.LabelRatio != 1 || got.LabelBalance < 0.999 || got.MainLanguage != "en" || got.SensitiveRecords != 0 {
		t.Errorf("report %+v", got.Report)
	}
}

func TestDatasetCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dataset", "check", "testdata/dataset/nosuch.jsonl"}, "no such file"},
		{[]string{"dataset", "check", "--manifest", "testdata/dataset/nosuch.toml", "testdata/dataset/clean.jsonl"}, "manifest"},
		{[]string{"dataset", "check", "--text-field", "body", "testdata/dataset/clean.jsonl"}, "no records"},
	} {
		if _, err := runCLI(t, dir, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("warden %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
