package audit

import (
	"context"
	"fmt"
	"testing"

	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func newClock() *storetest.Clock { return storetest.NewClock(storetest.T0) }

func startWriter(t testing.TB, db *store.DB, dir string, cfg Config) *Writer {
	t.Helper()
	cfg.DataDir = dir
	w := NewWriter(db, cfg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func req(i int) Record {
	return Record{
		Kind:         KindCompletion,
		RequestID:    fmt.Sprintf("req-%d", i),
		KeyID:        "k1",
		ClientIP:     "192.0.2.7",
		Endpoint:     "/v1/chat/completions",
		Model:        "registry.ollama.ai/library/demo:latest",
		ModelDigest:  "sha256:abc",
		PromptSHA256: sha256Hex(fmt.Sprint("prompt", i)),
		TokensIn:     int64(i),
		TokensOut:    42,
		LatencyMS:    12,
		TTFTMS:       3,
		Status:       200,
		FinishReason: "stop",
	}
}

func mustVerify(t *testing.T, db *store.DB, dir string, against *Checkpoint) Report {
	t.Helper()
	rep, err := Verify(context.Background(), db, dir, against)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verify: %s", rep.Break)
	}
	return rep
}

func count(t *testing.T, db *store.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// dropTriggers lets a test tamper with the chain the way an attacker with
// the file would.
func dropTriggers(t *testing.T, db *store.DB) {
	t.Helper()
	for _, tr := range []string{"audit_records_no_update", "audit_records_no_delete", "audit_checkpoints_no_update", "audit_checkpoints_no_delete"} {
		if _, err := db.Exec("DROP TRIGGER " + tr); err != nil {
			t.Fatal(err)
		}
	}
}
