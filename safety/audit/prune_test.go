package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestPruneKeepsVerifyGreen(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	clock := newClock()
	w := startWriter(t, db, dir, Config{CheckpointEvery: 7, Now: clock.Now, StoreText: StoreTextFull})
	for day := range 5 {
		for i := range 10 {
			r := req(day*10 + i)
			r.Prompt, r.Response = "hello", "world"
			if _, err := w.Append(t.Context(), r); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(24 * time.Hour)
	}
	// Records of days 0 and 1 are older than day 2's start.
	cut := newClock().Now().Add(48 * time.Hour)
	n, err := Prune(t.Context(), db, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("pruned %d, want 20", n)
	}
	rep := mustVerify(t, db, dir, nil)
	if rep.Anchor != 20 || rep.From != 21 || rep.Records != 31 {
		t.Errorf("report %+v, want anchor 20, from 21, 31 records (30 + the prune record)", rep)
	}
	if _, _, err := ReadText(t.Context(), db, dir, 5); !errors.Is(err, ErrNoText) {
		t.Errorf("text of a pruned record: %v, want ErrNoText", err)
	}
	prunes, err := Query(t.Context(), db, Filter{AfterSeq: 50})
	if err != nil || len(prunes) != 1 || prunes[0].Kind != KindPrune {
		t.Fatalf("prune record: %+v, %v", prunes, err)
	}

	// Appending after a prune, pruning again, pruning nothing: still green.
	if _, err := w.Append(t.Context(), req(99)); err != nil {
		t.Fatal(err)
	}
	if n, err := Prune(t.Context(), db, cut); err != nil || n != 0 {
		t.Errorf("second prune at the same cut: %d, %v, want 0", n, err)
	}
	if _, err := Prune(t.Context(), db, cut.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, db, dir, nil)
	// Prune records carry the real time, the others the fake clock's: cut
	// after both.
	if _, err := Prune(t.Context(), db, later(clock.Now(), time.Now()).Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, db, dir, nil)
	if rep.Records != 1 {
		t.Errorf("after pruning everything: %d records, want only the prune record", rep.Records)
	}
	if _, err := w.Append(t.Context(), req(100)); err != nil {
		t.Fatal(err)
	}
	w.Close(t.Context())
	mustVerify(t, db, dir, nil)

	// Outside Prune, deleting is refused and the guard is off again.
	if _, err := db.Exec(`DELETE FROM audit_records`); err == nil || !strings.Contains(err.Error(), "pruning") {
		t.Errorf("DELETE outside Prune: %v, want refused", err)
	}
	var active int
	db.QueryRow(`SELECT active FROM audit_prune_guard`).Scan(&active)
	if active != 0 {
		t.Errorf("prune guard left active")
	}
}

func TestStoreTextEncryptedAndPurgeable(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	clock := newClock()
	w := startWriter(t, db, dir, Config{StoreText: StoreTextFull, Now: clock.Now})
	r := req(1)
	r.PromptSHA256 = ""
	r.Prompt, r.Response = "what is the secret recipe?", "flour, water, salt"
	old, err := w.Append(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(8 * 24 * time.Hour)
	fresh, err := w.Append(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, TextKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("text key file: %v, %v", st, err)
	}
	p, resp, err := ReadText(t.Context(), db, dir, old)
	if err != nil || p != r.Prompt || resp != r.Response {
		t.Fatalf("ReadText = %q, %q, %v", p, resp, err)
	}
	recs, _ := Query(t.Context(), db, Filter{})
	if recs[0].PromptSHA256 != sha256Hex(r.Prompt) || recs[0].ResponseSHA256 != sha256Hex(r.Response) {
		t.Errorf("chained row carries %q/%q, want the text's SHA-256", recs[0].PromptSHA256, recs[0].ResponseSHA256)
	}
	// The plain text is nowhere in the database file.
	w.Close(t.Context())
	db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	raw, _ := os.ReadFile(db.Path())
	if strings.Contains(string(raw), "secret recipe") {
		t.Error("plain text found in the database file")
	}

	n, err := PurgeText(t.Context(), db, clock.Now().Add(-7*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PurgeText = %d, %v, want 1", n, err)
	}
	if _, _, err := ReadText(t.Context(), db, dir, old); !errors.Is(err, ErrNoText) {
		t.Errorf("purged text: %v, want ErrNoText", err)
	}
	if _, _, err := ReadText(t.Context(), db, dir, fresh); err != nil {
		t.Errorf("fresh text: %v", err)
	}
	mustVerify(t, db, dir, nil)

	// A wrong key is a clear error, not garbage.
	os.WriteFile(filepath.Join(dir, TextKeyFile), make([]byte, 32), 0o600)
	if _, _, err := ReadText(t.Context(), db, dir, fresh); err == nil || !strings.Contains(err.Error(), TextKeyFile) {
		t.Errorf("wrong key: %v, want an error naming %s", err, TextKeyFile)
	}
	os.Remove(filepath.Join(dir, TextKeyFile))
	err = NewWriter(db, Config{DataDir: dir, StoreText: StoreTextFull}).Start(t.Context())
	if !errors.Is(err, ErrKeyFile) {
		t.Errorf("missing text key with text stored: %v, want ErrKeyFile", err)
	}
}

func TestNoTextByDefault(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	r := req(1)
	r.Prompt = "hi"
	if _, err := w.Append(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "audit_text"); n != 0 {
		t.Errorf("%d text rows with store_text none", n)
	}
	if _, err := os.Stat(filepath.Join(dir, TextKeyFile)); err == nil {
		t.Error("text key created with store_text none")
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
