package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Prune deletes the chained rows older than before through the sanctioned
// path and returns how many it deleted. It deletes a prefix of the chain,
// up to the row before the first one at or after before (so a row is never
// deleted early because of clock skew between appenders), together with
// their stored text and older checkpoints. In the same transaction it
// appends a prune record and leaves a signed anchor (the last pruned row's
// seq and hash) that Verify starts from. The signing key is the one in the
// database's directory (the data dir).
func Prune(ctx context.Context, db *store.DB, before time.Time) (int64, error) {
	dataDir := filepath.Dir(db.Path())
	anyCkpt, err := hasRows(ctx, db, `SELECT count(*) FROM (SELECT 1 FROM audit_checkpoints LIMIT 1)`)
	if err != nil {
		return 0, fmt.Errorf("read audit checkpoints: %w", err)
	}
	priv, err := loadSigningKey(dataDir, !anyCkpt)
	if err != nil {
		return 0, err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune audit: begin: %w", err)
	}
	defer tx.Rollback()

	var first, through sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT
		(SELECT min(seq) FROM audit_records),
		coalesce((SELECT min(seq) FROM audit_records WHERE at >= ?) - 1, (SELECT max(seq) FROM audit_records))`,
		before.UnixMilli()).Scan(&first, &through)
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	if !first.Valid || !through.Valid || through.Int64 < first.Int64 {
		return 0, nil
	}
	var h []byte
	if err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_records WHERE seq = ?`, through.Int64).Scan(&h); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("prune audit: row %d is missing: run verify", through.Int64)
		}
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	anchorHash, err := hashFrom(h)
	if err != nil {
		return 0, fmt.Errorf("prune audit: row %d: %w", through.Int64, err)
	}

	// The prune itself is an event of the chain, appended before the rows go.
	detail, _ := json.Marshal(map[string]any{
		"before":      before.UTC().Format(time.RFC3339Nano),
		"first_seq":   first.Int64,
		"through_seq": through.Int64,
	})
	if _, err := appendTx(ctx, tx, appendOpts{}, []Record{{Kind: KindPrune, Detail: detail}}); err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	anchor := signCheckpoint(priv, CheckpointPrune, through.Int64, anchorHash, time.Now())
	if err := insertCheckpoint(ctx, tx, anchor); err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}

	if _, err := tx.ExecContext(ctx, `UPDATE audit_prune_guard SET active = 1 WHERE id = 1`); err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM audit_records WHERE seq <= ?`, through.Int64)
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_text WHERE seq <= ?`, through.Int64); err != nil {
		return 0, fmt.Errorf("prune audit text: %w", err)
	}
	// Checkpoints below the new anchor vouch for rows that are gone.
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE seq < ?`, through.Int64); err != nil {
		return 0, fmt.Errorf("prune audit checkpoints: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE audit_prune_guard SET active = 0 WHERE id = 1`); err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune audit: commit: %w", err)
	}
	return n, nil
}
