package store

// auditMigration creates the audit trail's tables (package safety/audit).
//
// audit_records is the hash chain: seq is assigned by the appender as the
// head's seq + 1 inside a BEGIN IMMEDIATE transaction, hash is
// SHA-256(prev_hash || canonical encoding of the row). Triggers refuse every
// UPDATE, and every DELETE unless audit_prune_guard.active is 1, which only
// the pruning path sets (and clears) inside its own transaction.
// audit_checkpoints holds signed (seq, hash) pairs: periodic ones and the
// anchors pruning leaves behind. audit_text holds encrypted prompt and
// response text outside the chain; it can be purged freely.
var auditMigration = migration{"audit trail", `
CREATE TABLE audit_records (
	seq             INTEGER PRIMARY KEY,
	at              INTEGER NOT NULL,            -- unix ms
	kind            TEXT NOT NULL,               -- request|completion|auth_refused|admin|config|prune
	request_id      TEXT NOT NULL DEFAULT '',
	key_id          TEXT NOT NULL DEFAULT '',
	client_ip       TEXT NOT NULL DEFAULT '',
	endpoint        TEXT NOT NULL DEFAULT '',
	model           TEXT NOT NULL DEFAULT '',    -- canonical name
	model_digest    TEXT NOT NULL DEFAULT '',
	prompt_sha256   TEXT NOT NULL DEFAULT '',    -- hex
	response_sha256 TEXT NOT NULL DEFAULT '',    -- hex
	tokens_in       INTEGER NOT NULL DEFAULT 0,
	tokens_out      INTEGER NOT NULL DEFAULT 0,
	latency_ms      INTEGER NOT NULL DEFAULT 0,
	ttft_ms         INTEGER NOT NULL DEFAULT 0,
	status          INTEGER NOT NULL DEFAULT 0,
	finish_reason   TEXT NOT NULL DEFAULT '',
	safety          TEXT NOT NULL DEFAULT '',    -- JSON, empty until the filter fills it
	detail          TEXT NOT NULL DEFAULT '',    -- JSON for admin/config/prune/auth_refused
	prev_hash       BLOB NOT NULL,
	hash            BLOB NOT NULL
);
CREATE INDEX audit_records_at ON audit_records (at);

CREATE TABLE audit_prune_guard (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	active INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_prune_guard (id, active) VALUES (1, 0);

CREATE TABLE audit_checkpoints (
	id         INTEGER PRIMARY KEY,
	seq        INTEGER NOT NULL,
	hash       BLOB NOT NULL,
	at         INTEGER NOT NULL,                 -- unix ms
	kind       TEXT NOT NULL,                    -- periodic|prune
	public_key BLOB NOT NULL,
	signature  BLOB NOT NULL
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

CREATE TABLE audit_text (
	seq      INTEGER PRIMARY KEY,                -- audit_records.seq
	at       INTEGER NOT NULL,                   -- unix ms, for purging
	prompt   BLOB,                               -- nonce || AES-256-GCM ciphertext
	response BLOB
);
CREATE INDEX audit_text_at ON audit_text (at);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
	SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
WHEN (SELECT active FROM audit_prune_guard WHERE id = 1) IS NOT 1
BEGIN
	SELECT RAISE(ABORT, 'audit records are deleted only by retention pruning');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
	SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
WHEN (SELECT active FROM audit_prune_guard WHERE id = 1) IS NOT 1
BEGIN
	SELECT RAISE(ABORT, 'audit checkpoints are deleted only by retention pruning');
END;
`}
