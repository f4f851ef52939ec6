package store

// outboxLimitsMigration bounds the outbox and keeps what truncation
// detection needs.
//
// outbox_state is one row: the bytes of the bodies in the outbox (kept by
// triggers, so the check before each enqueue reads one row instead of
// summing the table), the cap and what to do at it (written by `warden
// serve` from audit.outbox_max_bytes and audit.outbox_full, so an admin
// command in another process obeys the running server's choice), how many
// messages were dropped at the cap, and whether the 80% alert is raised.
//
// outbox_cursors.seen_seq is the highest audit seq a sink has been sent:
// after a crash that loses committed rows, Warden refuses to reuse a
// number a sink may hold under another hash.
var outboxLimitsMigration = migration{"outbox limits and seen seqs", `
CREATE TABLE outbox_state (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	bytes      INTEGER NOT NULL DEFAULT 0,          -- sum of length(body) in outbox
	max_bytes  INTEGER NOT NULL DEFAULT 268435456,  -- audit.outbox_max_bytes
	full_mode  TEXT NOT NULL DEFAULT 'fail_closed', -- audit.outbox_full
	dropped    INTEGER NOT NULL DEFAULT 0,          -- messages dropped at the cap
	alerted    INTEGER NOT NULL DEFAULT 0           -- 1 while the fill alert is raised
);
INSERT INTO outbox_state (id, bytes) SELECT 1, coalesce(sum(length(body)), 0) FROM outbox;
CREATE TRIGGER outbox_bytes_insert AFTER INSERT ON outbox BEGIN
	UPDATE outbox_state SET bytes = bytes + length(NEW.body) WHERE id = 1;
END;
CREATE TRIGGER outbox_bytes_delete AFTER DELETE ON outbox BEGIN
	UPDATE outbox_state SET bytes = bytes - length(OLD.body) WHERE id = 1;
END;
ALTER TABLE outbox_cursors ADD COLUMN seen_seq INTEGER NOT NULL DEFAULT 0;
`}
