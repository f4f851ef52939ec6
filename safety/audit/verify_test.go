package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// appendN appends n records one by one (one transaction each).
func appendN(t *testing.T, w *Writer, n int) {
	t.Helper()
	for i := range n {
		if _, err := w.Append(t.Context(), req(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyNamesFirstBrokenLink(t *testing.T) {
	tests := []struct {
		name   string
		tamper string // SQL run with the triggers dropped
		seq    int64
		want   Problem
	}{
		{"field changed", `UPDATE audit_records SET tokens_out = tokens_out + 1 WHERE seq = 17`, 17, ProblemHashMismatch},
		{"byte flipped in detail", `UPDATE audit_records SET detail = '{"a":2}' WHERE seq = 23`, 23, ProblemHashMismatch},
		{"byte flipped in hash", `UPDATE audit_records SET hash = randomblob(32) WHERE seq = 30`, 30, ProblemHashMismatch},
		{"row deleted", `DELETE FROM audit_records WHERE seq = 12`, 12, ProblemMissingRow},
		{"first rows deleted", `DELETE FROM audit_records WHERE seq <= 5`, 1, ProblemMissingRow},
		{"row rewritten consistently", `UPDATE audit_records SET prev_hash = randomblob(32) WHERE seq = 40`, 40, ProblemBrokenLink},
		{"checkpoint forged", `UPDATE audit_checkpoints SET hash = randomblob(32) WHERE seq = (SELECT min(seq) FROM audit_checkpoints)`, 20, ProblemBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := storetest.OpenDir(t, dir)
			w := startWriter(t, db, dir, Config{CheckpointEvery: 20})
			appendN(t, w, 50)
			w.Close(t.Context())
			mustVerify(t, db, dir, nil)
			dropTriggers(t, db)
			if _, err := db.Exec(tc.tamper); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(t.Context(), db, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Break == nil {
				t.Fatal("verify passed a tampered chain")
			}
			if rep.Break.Seq != tc.seq || rep.Break.Problem != tc.want {
				t.Errorf("break %s, want seq %d: %s", rep.Break, tc.seq, tc.want)
			}
		})
	}
}

func TestVerifyCatchesTruncatedTailAgainstOffHost(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{CheckpointEvery: 100})
	appendN(t, w, 250)
	w.Close(t.Context()) // final checkpoint at 250
	// The next run forwards its checkpoints off-host.
	var offHost []byte
	w2 := startWriter(t, db, dir, Config{CheckpointEvery: 100, OnCheckpoint: func(_ *sql.Tx, c Checkpoint) error {
		var err error
		offHost, err = json.Marshal(c)
		return err
	}})
	appendN(t, w2, 10)
	w2.Close(t.Context())
	against, err := ParseCheckpoint(offHost)
	if err != nil {
		t.Fatal(err)
	}
	if against.Seq != 260 {
		t.Fatalf("off-host checkpoint at %d, want 260", against.Seq)
	}
	mustVerify(t, db, dir, &against)

	// An attacker with the file drops the tail and the local checkpoint
	// that vouched for it.
	dropTriggers(t, db)
	if _, err := db.Exec(`DELETE FROM audit_records WHERE seq > 250; DELETE FROM audit_checkpoints WHERE seq > 250`); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, db, dir, nil) // the local evidence alone cannot tell
	rep, err := Verify(t.Context(), db, dir, &against)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Break == nil || rep.Break.Problem != ProblemTruncated || rep.Break.Seq != 251 {
		t.Errorf("verify against off-host checkpoint: %v, want truncated at 251", rep.Break)
	}

	// An against checkpoint signed by another key is refused.
	forged := against
	forged.Seq = 100
	rep, _ = Verify(t.Context(), db, dir, &forged)
	if rep.Break == nil || rep.Break.Problem != ProblemBadSignature {
		t.Errorf("forged against: %v, want bad signature", rep.Break)
	}
}

func TestTriggersRefuseChanges(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{CheckpointEvery: 5})
	appendN(t, w, 10)
	for _, q := range []string{
		`UPDATE audit_records SET status = 500 WHERE seq = 3`,
		`DELETE FROM audit_records WHERE seq = 3`,
		`DELETE FROM audit_records`,
		`UPDATE audit_checkpoints SET seq = 1`,
		`DELETE FROM audit_checkpoints`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "audit") {
			t.Errorf("%s: %v, want a refusal by trigger", q, err)
		}
	}
	if n := count(t, db, "audit_records"); n != 10 {
		t.Errorf("%d rows, want 10", n)
	}
}

func TestKeyFileErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{CheckpointEvery: 5})
	appendN(t, w, 10)
	w.Close(t.Context())
	path := filepath.Join(dir, SigningKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, st.Mode().Perm())
	}
	key, _ := os.ReadFile(path)

	check := func(what string) {
		t.Helper()
		err := NewWriter(db, Config{DataDir: dir}).Start(context.Background())
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: start: %v, want an error naming %s", what, err, path)
		}
		_, err = Verify(context.Background(), db, dir, nil)
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: verify: %v, want an error naming %s", what, err, path)
		}
	}
	os.Remove(path)
	check("missing")
	if _, err := os.Stat(path); err == nil {
		t.Error("a missing key was silently recreated")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	check("corrupt")
	os.WriteFile(path, key, 0o600)
	mustVerify(t, db, dir, nil)
}

func TestVerifyTail(t *testing.T) {
	tests := []struct {
		name   string
		tamper string
		seq    int64 // 0: passes
		want   Problem
	}{
		{"clean", ``, 0, ""},
		{"before the newest checkpoint (not its job)", `UPDATE audit_records SET status = 1 WHERE seq = 5`, 0, ""},
		{"the checkpointed row", `UPDATE audit_records SET status = 1 WHERE seq = 40`, 40, ProblemHashMismatch},
		{"after the newest checkpoint", `UPDATE audit_records SET status = 1 WHERE seq = 44`, 44, ProblemHashMismatch},
		{"checkpointed row deleted", `DELETE FROM audit_records WHERE seq >= 40`, 40, ProblemTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := storetest.OpenDir(t, dir)
			w := startWriter(t, db, dir, Config{CheckpointEvery: 20})
			appendN(t, w, 40)
			w.Close(t.Context())
			// CLI appends after the server stopped: not yet checkpointed.
			tx, _ := db.BeginTx(t.Context(), nil)
			if _, err := AppendTx(t.Context(), tx, req(1), req(2), req(3), req(4), req(5)); err != nil {
				t.Fatal(err)
			}
			tx.Commit()
			if tc.tamper != "" {
				dropTriggers(t, db)
				if _, err := db.Exec(tc.tamper); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := VerifyTail(t.Context(), db, dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.seq == 0 {
				if rep.Break != nil || rep.From != 40 || rep.To != 45 {
					t.Errorf("report %+v (%v), want OK from 40 to 45", rep, rep.Break)
				}
				return
			}
			if rep.Break == nil || rep.Break.Seq != tc.seq || rep.Break.Problem != tc.want {
				t.Errorf("break %v, want seq %d: %s", rep.Break, tc.seq, tc.want)
			}
		})
	}
}
