package store

// probesMigration stores probe runs (`warden probe run`, serve's
// schedule) and every answer, and marks the keys whose requests are
// probes: their audit records say so.
var probesMigration = migration{"probe runs", `
CREATE TABLE probe_runs (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	started_at    INTEGER NOT NULL,   -- unix ms
	finished_at   INTEGER NOT NULL,
	suite         TEXT NOT NULL,
	suite_sha256  TEXT NOT NULL,
	model         TEXT NOT NULL,
	model_digest  TEXT NOT NULL DEFAULT '',
	seed          INTEGER NOT NULL,
	key_id        TEXT NOT NULL DEFAULT '',
	trigger       TEXT NOT NULL,      -- cli | schedule
	guard         TEXT NOT NULL DEFAULT 'none',
	probes        INTEGER NOT NULL,
	passed        INTEGER NOT NULL,
	failed        INTEGER NOT NULL,
	errors        INTEGER NOT NULL,
	results       TEXT NOT NULL,      -- JSON: per-category results
	skipped       TEXT NOT NULL DEFAULT '[]' -- JSON: malformed suite lines
);
CREATE INDEX probe_runs_model ON probe_runs (model, id);
CREATE TABLE probe_answers (
	run_id      INTEGER NOT NULL REFERENCES probe_runs (id) ON DELETE CASCADE,
	idx         INTEGER NOT NULL,
	probe_id    TEXT NOT NULL,
	category    TEXT NOT NULL,
	outcome     TEXT NOT NULL,        -- pass | fail | error
	request_id  TEXT NOT NULL DEFAULT '',
	probe       TEXT NOT NULL,        -- JSON
	answer      TEXT NOT NULL,        -- JSON, the answer's text included
	scored      TEXT NOT NULL,        -- JSON
	PRIMARY KEY (run_id, idx)
);
ALTER TABLE keys ADD COLUMN probe INTEGER NOT NULL DEFAULT 0;
`}
