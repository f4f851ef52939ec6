package store

// modelsMigration holds governed models: pins by manifest digest, the
// history of what each name pointed to, and each version's provenance.
var modelsMigration = migration{"model pins, history and provenance", `
CREATE TABLE model_pins (
	name    TEXT PRIMARY KEY,          -- canonical model name
	digest  TEXT NOT NULL,             -- manifest digest, bare hex
	at      INTEGER NOT NULL,          -- unix ms
	actor   TEXT NOT NULL
);
CREATE TABLE model_history (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	at          INTEGER NOT NULL,      -- unix ms
	name        TEXT NOT NULL,         -- canonical model name
	action      TEXT NOT NULL,         -- pull, import, rollback
	old_digest  TEXT NOT NULL DEFAULT '', -- '' when the name was new
	new_digest  TEXT NOT NULL,
	source      TEXT NOT NULL DEFAULT '',
	actor       TEXT NOT NULL
);
CREATE INDEX model_history_name ON model_history (name, seq);
CREATE TABLE model_provenance (
	name          TEXT NOT NULL,       -- canonical model name
	digest        TEXT NOT NULL,       -- manifest digest, bare hex
	source        TEXT NOT NULL,       -- registry URL, or file path
	source_sha256 TEXT NOT NULL DEFAULT '', -- the imported file's SHA-256
	license       TEXT NOT NULL DEFAULT '', -- first lines of the licence layer
	license_spdx  TEXT NOT NULL DEFAULT '', -- an SPDX guess
	actor         TEXT NOT NULL,
	at            INTEGER NOT NULL,    -- unix ms
	notes         TEXT NOT NULL DEFAULT '[]', -- JSON array of {at, actor, note}
	PRIMARY KEY (name, digest)
);
`}
