// Package audittest makes the audit trail's faults on a real database for
// tests: a disk that is full, records lost from the chain's end.
package audittest

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/store"
)

// FillUntilFull fills db through w to a real SQLITE_FULL: max_page_count
// a little above the size now (chmod proves nothing for root), then
// smaller and smaller records until not even a bare one fits.
func FillUntilFull(t testing.TB, db *store.DB, w *audit.Writer) {
	t.Helper()
	var pages int64
	if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	w.SetMaxPageCount(pages + 2)
	for _, size := range []int{3000, 300, 30, 0} {
		pad := audit.Record{Kind: audit.KindConfig, Detail: []byte(`{"pad":"` + strings.Repeat("x", size) + `"}`)}
		for i := 0; ; i++ {
			if _, err := w.Append(t.Context(), pad); err != nil {
				break
			}
			if i > 10000 {
				t.Fatal("the database never filled up")
			}
		}
	}
}

// LoseTail deletes the chain's records and checkpoints from seq on, as a
// truncated write-ahead log would lose them, with raw a connection that
// bypasses Warden's store. With outbox set, the outbox loses their
// messages too (and every non-audit one) and its id counter goes back to
// what is left.
func LoseTail(t testing.TB, raw *sql.DB, seq int64, outbox bool) {
	t.Helper()
	qs := []string{
		`DROP TRIGGER audit_records_no_delete`,
		`DROP TRIGGER audit_checkpoints_no_delete`,
		fmt.Sprintf(`DELETE FROM audit_records WHERE seq >= %d`, seq),
		fmt.Sprintf(`DELETE FROM audit_checkpoints WHERE seq >= %d`, seq),
	}
	if outbox {
		qs = append(qs,
			fmt.Sprintf(`DELETE FROM outbox WHERE topic != 'audit' OR json_extract(body, '$.seq') >= %d`, seq),
			`UPDATE sqlite_sequence SET seq = (SELECT max(id) FROM outbox) WHERE name = 'outbox'`)
	}
	for _, q := range qs {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
