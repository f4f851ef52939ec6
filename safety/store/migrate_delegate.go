package store

// delegateMigration holds what keys with the delegate scope need: per key,
// whether a request must name its end user (NULL: the configured default)
// and the end users it refuses; per (key, end user), token usage by UTC
// day and month with the time last seen (unix ms); and the end user each
// audit record was made for (empty for records without one, and for every
// record written before this step).
var delegateMigration = migration{"delegate keys and end users", `
ALTER TABLE keys ADD COLUMN require_user INTEGER;
ALTER TABLE keys ADD COLUMN blocked_users TEXT NOT NULL DEFAULT '[]';
CREATE TABLE user_usage (
	key_id    TEXT NOT NULL,
	user_id   TEXT NOT NULL,
	period    TEXT NOT NULL,             -- "day" or "month"
	bucket    TEXT NOT NULL,             -- "2026-11-22" or "2026-11"
	tokens    INTEGER NOT NULL,
	last_seen INTEGER NOT NULL DEFAULT 0, -- unix ms
	PRIMARY KEY (key_id, user_id, period, bucket)
);
ALTER TABLE audit_records ADD COLUMN end_user TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_records ADD COLUMN end_user_email TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_records ADD COLUMN end_user_name TEXT NOT NULL DEFAULT '';
`}
