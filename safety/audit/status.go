package audit

import (
	"context"
	"fmt"

	"github.com/warden-llm/warden/safety/store"
)

// Status summarises the trail for `warden audit status`.
type Status struct {
	HeadSeq        int64       `json:"head_seq"` // 0: empty
	HeadHash       Hash        `json:"head_hash"`
	Records        int64       `json:"records"` // rows kept (after pruning)
	TextRows       int64       `json:"text_rows"`
	LastCheckpoint *Checkpoint `json:"last_checkpoint,omitempty"`
}

// ReadStatus reads the chain head, the row counts and the newest checkpoint.
func ReadStatus(ctx context.Context, db *store.DB) (Status, error) {
	var st Status
	var err error
	if st.HeadSeq, st.HeadHash, err = readHead(ctx, db); err != nil {
		return st, err
	}
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM audit_records), (SELECT count(*) FROM audit_text)`).
		Scan(&st.Records, &st.TextRows); err != nil {
		return st, fmt.Errorf("read audit status: %w", err)
	}
	cps, err := loadCheckpoints(ctx, db)
	if err != nil {
		return st, err
	}
	if len(cps) > 0 {
		c := cps[len(cps)-1]
		st.LastCheckpoint = &c
	}
	return st, nil
}
