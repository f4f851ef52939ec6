package store

import (
	"context"
	"fmt"
)

// migration is one schema step. Steps are applied in order, each in its own
// transaction, and recorded in PRAGMA user_version. Never edit a released
// step: append a new one.
type migration struct {
	name string
	sql  string
}

// migrations is the schema's history. Version n is migrations[:n] applied.
// Later features append their steps here; each step's SQL lives in a file
// of its own (migrate_*.go).
var migrations = []migration{
	keysMigration,
	auditMigration,
	outboxMigration,
	keysSchedMigration,
	outboxLimitsMigration,
	keysCIDRMigration,
	delegateMigration,
	modelsMigration,
	probesMigration,
}

var keysMigration = migration{"keys and admin events", `
CREATE TABLE keys (
	id            TEXT PRIMARY KEY,
	name          TEXT NOT NULL,
	secret_hash   BLOB NOT NULL,
	prev_hash     BLOB,
	prev_until    INTEGER,            -- unix ms: the previous secret works until then
	created_at    INTEGER NOT NULL,   -- unix ms
	rotated_at    INTEGER,
	expires_at    INTEGER,
	revoked_at    INTEGER,
	last_used_at  INTEGER,
	scopes        TEXT NOT NULL,      -- JSON array
	models        TEXT NOT NULL,      -- JSON array of glob patterns
	limits        TEXT NOT NULL,      -- JSON object
	policy        TEXT NOT NULL DEFAULT '',
	version       INTEGER NOT NULL    -- bumped on every change; the server polls it
);
CREATE TABLE admin_events (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	at      INTEGER NOT NULL,          -- unix ms
	actor   TEXT NOT NULL,             -- OS user ("os:alice") or admin key id ("key:abc")
	action  TEXT NOT NULL,
	key_id  TEXT,
	detail  TEXT NOT NULL DEFAULT '{}' -- JSON, never a secret
);
CREATE TABLE usage (
	key_id  TEXT NOT NULL,
	period  TEXT NOT NULL,             -- "day" or "month"
	bucket  TEXT NOT NULL,             -- "2026-11-22" or "2026-11"
	tokens  INTEGER NOT NULL,
	PRIMARY KEY (key_id, period, bucket)
);
`}

func (db *DB) migrate(ctx context.Context) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", friendly(db.path, err))
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: %s has version %d, this warden knows %d: upgrade warden", ErrNewerSchema, db.path, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		m := migrations[i]
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate to %d (%s): %w", i+1, m.name, friendly(db.path, err))
		}
		// Another process may have migrated while this one waited for the lock.
		var now int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&now); err != nil {
			tx.Rollback()
			return fmt.Errorf("read schema version: %w", err)
		}
		if now > i {
			tx.Rollback()
			i = now - 1
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d (%s): %w", i+1, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", i+1, err)
		}
	}
	return nil
}
