package audit

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func readDay(t *testing.T, path string) []StoredRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []StoredRecord
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		var r StoredRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func TestExportDays(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	ctx := t.Context()
	day1 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	for i, at := range []time.Time{day1, day1.Add(time.Hour), day1.AddDate(0, 0, 1), day1.AddDate(0, 0, 2)} {
		r := req(i)
		r.Time = at
		if _, err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "audit")
	now := day1.AddDate(0, 0, 2).Add(time.Hour)
	if err := ExportDays(ctx, db, out, now, 30); err != nil {
		t.Fatal(err)
	}
	for day, want := range map[string]int{"2026-11-20": 2, "2026-11-21": 1, "2026-11-22": 1} {
		if got := readDay(t, filepath.Join(out, day+".jsonl.gz")); len(got) != want {
			t.Errorf("%s: %d records, want %d", day, len(got), want)
		}
	}
	// Today's file grows on the next run; finished days are not redone.
	if err := os.Remove(filepath.Join(out, "2026-11-20.jsonl.gz")); err != nil {
		t.Fatal(err)
	}
	r := req(9)
	r.Time = now.Add(time.Minute)
	if _, err := w.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := ExportDays(ctx, db, out, now.Add(2*time.Minute), 30); err != nil {
		t.Fatal(err)
	}
	if got := readDay(t, filepath.Join(out, "2026-11-22.jsonl.gz")); len(got) != 2 {
		t.Errorf("today after a new record: %d records, want 2", len(got))
	}
	if _, err := os.Stat(filepath.Join(out, "2026-11-20.jsonl.gz")); !os.IsNotExist(err) {
		t.Errorf("a finished day was exported again (resume point ignored): %v", err)
	}
	// Retention removes old files.
	if err := ExportDays(ctx, db, out, now.AddDate(0, 0, 40), 30); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "2026-11-21.jsonl.gz")); !os.IsNotExist(err) {
		t.Errorf("a file past retention was kept: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(out, "*.tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
