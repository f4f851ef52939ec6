package quota

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// PruneUsage deletes the persisted day and month usage (the usage and
// user_usage tables) of periods that ended before before, and returns how
// many rows it deleted. A day counts until its end and a month until its
// last day's, so the periods quotas read (today and this month) are kept
// whenever before is in the past. The per-user rows name end users, so
// the server prunes them with the audit records that name them too
// (audit.retention_days).
func PruneUsage(ctx context.Context, db *store.DB, before time.Time) (int64, error) {
	day, month := dayName(before), monthName(before)
	var n int64
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		for _, table := range []string{"usage", "user_usage"} {
			res, err := tx.ExecContext(ctx, `DELETE FROM `+table+`
				WHERE (period = 'day' AND bucket < ?) OR (period = 'month' AND bucket < ?)`, day, month)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune usage: %w", err)
	}
	return n, nil
}
