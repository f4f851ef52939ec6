package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/warden-llm/warden/safety/store"
)

// ReadTextAudited returns the text stored for record seq after appending an
// admin record of the read (actor, seq) to the chain: the text is returned
// only if the record of its reading committed.
func ReadTextAudited(ctx context.Context, db *store.DB, dataDir string, seq int64, actor string) (prompt, response string, err error) {
	recs, err := Query(ctx, db, Filter{AfterSeq: seq - 1, Limit: 1})
	if err != nil {
		return "", "", err
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		return "", "", fmt.Errorf("no audit record %d (pruned after retention_days, or never written)", seq)
	}
	prompt, response, err = ReadText(ctx, db, dataDir, seq)
	if errors.Is(err, ErrNoText) {
		return "", "", fmt.Errorf("record %d has no stored text: store_text was none when it was written, or text_retention_days purged it", seq)
	}
	if err != nil {
		return "", "", err
	}
	// Shaped like the key commands' admin records: who, what, on which.
	type read struct {
		Seq int64 `json:"seq"`
	}
	detail, err := json.Marshal(struct {
		Actor  string `json:"actor"`
		Action string `json:"action"`
		Detail read   `json:"detail"`
	}{actor, ActionTextRead, read{seq}})
	if err != nil {
		return "", "", err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	defer tx.Rollback()
	if _, err := AppendTx(ctx, tx, Record{Kind: KindAdmin, Detail: detail}); err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", "", fmt.Errorf("record the read: %w", err)
	}
	return prompt, response, nil
}

// ActionTextRead is the action of the admin record ReadTextAudited appends (`warden audit text`).
const ActionTextRead = "audit_text_read"
