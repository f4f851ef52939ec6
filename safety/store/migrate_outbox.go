package store

// outboxMigration creates the outbox that forwards records off-host
// (package safety/outbox).
//
// outbox holds every message waiting to leave the host, in commit order:
// SQLite has one writer at a time, so a row committed later always has a
// larger id, and a sink reading "id > cursor" never skips a row that
// commits after it looked. AUTOINCREMENT keeps ids from being reused after
// pruning, so cursors stay valid. outbox_cursors holds each sink's
// progress (the largest id it has delivered) and its last outcome, so
// every sink gets every message at least once, independently of the
// others, across restarts; `warden audit status` reads it from another
// process.
var outboxMigration = migration{"outbox", `
CREATE TABLE outbox (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	topic  TEXT NOT NULL,                      -- "audit", "checkpoint", "alert"
	at     INTEGER NOT NULL,                   -- unix ms: the message's time
	body   TEXT NOT NULL                       -- JSON
);
CREATE TABLE outbox_cursors (
	sink          TEXT PRIMARY KEY,            -- the sink's configured name
	delivered     INTEGER NOT NULL DEFAULT 0,  -- largest outbox id delivered
	delivered_at  INTEGER,                     -- unix ms of the last successful send
	failures      INTEGER NOT NULL DEFAULT 0,  -- consecutive failed sends
	last_error    TEXT NOT NULL DEFAULT '',
	error_at      INTEGER                      -- unix ms of last_error
);
`}
