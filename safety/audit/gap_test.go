package audit

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestGapRecordVerifies: a gap record continues the chain above the seq
// it names, Verify accepts the jump there only, and a gap record that
// does not match the head it follows is a missing-row break.
func TestGapRecordVerifies(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	appendOne := func(r Record) int64 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		seqs, err := AppendTx(ctx, tx, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return seqs[0]
	}
	head := appendOne(Record{Kind: KindConfig})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AppendGapTx(ctx, tx, GapDetail{SeenSeq: head}, storetest.T0); err == nil {
		t.Error("a gap with nothing seen above the head was recorded")
	}
	gap, err := AppendGapTx(ctx, tx, GapDetail{SeenSeq: head + 10, Actor: "os:alice"}, storetest.T0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if gap != head+11 {
		t.Errorf("gap record at seq %d, want %d", gap, head+11)
	}
	if next := appendOne(Record{Kind: KindConfig}); next != gap+1 {
		t.Errorf("the record after the gap has seq %d, want %d", next, gap+1)
	}
	rep, err := Verify(ctx, db, dir, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify across the gap: %+v %v", rep, err)
	}

	// A jump without a gap record is still a break.
	if _, err := db.ExecContext(ctx, `DROP TRIGGER audit_records_no_delete`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_records WHERE seq = ?`, gap); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(ctx, db, dir, nil); err != nil || rep.OK() || rep.Break.Problem != ProblemMissingRow {
		t.Errorf("verify with the gap record removed: %+v %v; want a missing row", rep, err)
	}
}

// FuzzExportedMaxSeq: whatever a daily export file holds, reading it
// returns a number or an error, never a panic.
func FuzzExportedMaxSeq(f *testing.F) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	line, _ := json.Marshal(StoredRecord{Seq: 7, Record: Record{Kind: KindConfig}})
	f.Add(gz(string(line) + "\n"))
	f.Add(gz(`{"seq":-1}` + "\n" + `{"seq":"x"}`))
	f.Add([]byte("not gzip"))
	f.Add(gz(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "2026-01-01.jsonl.gz"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if seq, file, err := ExportedMaxSeq(dir); err == nil && seq > 0 && file == "" {
			t.Errorf("seq %d without a file", seq)
		}
	})
}
