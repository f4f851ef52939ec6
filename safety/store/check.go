package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrDamaged reports a database file SQLite's own check finds malformed.
var ErrDamaged = errors.New("database file is damaged")

// Check runs PRAGMA quick_check, or with full PRAGMA integrity_check (which
// also compares every index with its table: slower, it reads every page
// more than once), and returns nil when SQLite reports "ok". Otherwise the
// error wraps ErrDamaged and holds SQLite's first findings. A file damaged
// badly enough that the pragma itself fails counts as damaged too.
func (db *DB) Check(ctx context.Context, full bool) error {
	pragma := "quick_check"
	if full {
		pragma = "integrity_check"
	}
	rows, err := db.QueryContext(ctx, "PRAGMA "+pragma+"(20)")
	if err != nil {
		return fmt.Errorf("%w: %s: %s: %v", ErrDamaged, db.path, pragma, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("%w: %s: %s: %v", ErrDamaged, db.path, pragma, err)
		}
		if s != "ok" {
			found = append(found, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: %s: %s: %v", ErrDamaged, db.path, pragma, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s: %s: %s", ErrDamaged, db.path, pragma, strings.Join(found, "; "))
	}
	return nil
}
