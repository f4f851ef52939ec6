package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// What to do when the outbox reaches its cap (audit.outbox_full).
const (
	// FullFailClosed refuses what would be forwarded: the audit record is
	// not committed, so the request it belongs to is refused (503).
	FullFailClosed = "fail_closed"
	// FullDropOldest deletes the oldest undelivered messages to make room;
	// the caller records what was dropped.
	FullDropOldest = "drop_oldest"
)

// DefaultMaxBytes is audit.outbox_max_bytes' default: 256 MiB.
const DefaultMaxBytes = 256 << 20

// ErrFull reports an enqueue refused at the cap in FullFailClosed mode.
var ErrFull = errors.New("outbox full: forwarding sinks are behind (audit.outbox_max_bytes)")

// AlertKindOutbox is the kind of the alert raised when the outbox fills
// past FillAlertRatio of its cap, and cleared below ClearAlertRatio.
const AlertKindOutbox = "outbox_full"

// The fill levels of the outbox alert.
const (
	FillAlertRatio  = 0.8
	ClearAlertRatio = 0.7
	// DropToRatio is the fill level drop_oldest brings the outbox down to:
	// between the two alert levels, so the alert stays raised.
	DropToRatio = 0.75
)

// OutboxAlert is the body of an outbox fill alert.
type OutboxAlert struct {
	Active   bool      `json:"active"`
	Bytes    int64     `json:"bytes"`
	Kind     string    `json:"kind"` // always AlertKindOutbox
	MaxBytes int64     `json:"max_bytes"`
	Message  string    `json:"message"`
	Mode     string    `json:"mode"`
	Time     time.Time `json:"time"` // UTC
}

// State is the outbox's fill level and settings (table outbox_state).
type State struct {
	Bytes    int64  // bodies in the outbox, delivered or not
	MaxBytes int64  // the cap
	Mode     string // FullFailClosed or FullDropOldest
	Dropped  int64  // messages dropped at the cap, ever
	Alerted  bool   // the fill alert is raised
	// Forwarding: some sink has a cursor (a server with sinks started on
	// this database), so chain records are enqueued.
	Forwarding bool
}

type rowQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ReadState reads the outbox's state in tx or db.
func ReadState(ctx context.Context, q rowQueryer) (State, error) {
	var s State
	err := q.QueryRowContext(ctx, `SELECT bytes, max_bytes, full_mode, dropped, alerted,
		EXISTS (SELECT 1 FROM outbox_cursors) FROM outbox_state WHERE id = 1`).
		Scan(&s.Bytes, &s.MaxBytes, &s.Mode, &s.Dropped, &s.Alerted, &s.Forwarding)
	if err != nil {
		return State{}, fmt.Errorf("read outbox state: %w", err)
	}
	return s, nil
}

// SetLimits stores the cap and the mode at the cap, which every process
// enqueuing on db then obeys (`warden serve` calls it at start).
func SetLimits(ctx context.Context, db *store.DB, maxBytes int64, mode string) error {
	switch mode {
	case FullFailClosed, FullDropOldest:
	default:
		return fmt.Errorf("outbox: full mode %q: want %q or %q", mode, FullFailClosed, FullDropOldest)
	}
	if maxBytes <= 0 {
		return fmt.Errorf("outbox: max bytes must be positive, got %d", maxBytes)
	}
	if _, err := db.ExecContext(ctx, `UPDATE outbox_state SET max_bytes = ?, full_mode = ? WHERE id = 1`, maxBytes, mode); err != nil {
		return fmt.Errorf("set outbox limits: %w", err)
	}
	return nil
}

// SetAlertedTx records, in tx, whether the fill alert is raised.
func SetAlertedTx(ctx context.Context, tx *sql.Tx, on bool) error {
	if _, err := tx.ExecContext(ctx, `UPDATE outbox_state SET alerted = ? WHERE id = 1`, on); err != nil {
		return fmt.Errorf("outbox alert state: %w", err)
	}
	return nil
}

// Dropped describes the messages MakeRoomTx deleted undelivered.
type Dropped struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
	FirstID  int64 `json:"first_id"`
	LastID   int64 `json:"last_id"`
	// Seqs is the range of audit seqs among them (0 when none).
	FirstSeq int64 `json:"first_seq,omitempty"`
	LastSeq  int64 `json:"last_seq,omitempty"`
}

// MakeRoomTx makes room in tx for need more bytes of bodies under the cap
// in s. Past ClearAlertRatio of the cap it first deletes what every sink
// has delivered (so a sink that caught up brings the level, and the alert,
// down at once, not at the next hourly prune); if that is not enough, in
// FullFailClosed mode it returns ErrFull, and in FullDropOldest mode it
// deletes the oldest undelivered messages and says which (the caller
// records that in the chain). Well under the cap it does nothing.
func MakeRoomTx(ctx context.Context, tx *sql.Tx, s State, need int64) (Dropped, error) {
	if float64(s.Bytes+need) < ClearAlertRatio*float64(s.MaxBytes) {
		return Dropped{}, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id <= coalesce(
		(SELECT min(delivered) FROM outbox_cursors), (SELECT max(id) FROM outbox))`); err != nil {
		return Dropped{}, fmt.Errorf("outbox: free delivered messages: %w", err)
	}
	var bytes int64
	if err := tx.QueryRowContext(ctx, `SELECT bytes FROM outbox_state WHERE id = 1`).Scan(&bytes); err != nil {
		return Dropped{}, fmt.Errorf("read outbox state: %w", err)
	}
	if bytes+need <= s.MaxBytes {
		return Dropped{}, nil
	}
	if s.Mode != FullDropOldest {
		return Dropped{}, fmt.Errorf("%w (%d of %d bytes)", ErrFull, bytes, s.MaxBytes)
	}
	// Drop the oldest until the new messages fit in DropToRatio of the cap,
	// so the next enqueues do not each drop a few messages (each drop is a
	// chain record). Alerts are kept: they say why the rest is going.
	excess := bytes + need - int64(float64(s.MaxBytes)*DropToRatio)
	var d Dropped
	err := tx.QueryRowContext(ctx, `WITH o AS (SELECT id, topic, body, sum(length(body)) OVER (ORDER BY id) AS run
			FROM outbox WHERE topic != 'alert'),
		c AS (SELECT id, topic, body FROM o WHERE run - length(body) < ?)
		SELECT count(*), coalesce(sum(length(body)), 0), coalesce(min(id), 0), coalesce(max(id), 0),
			coalesce(min(CASE WHEN topic = 'audit' THEN json_extract(body, '$.seq') END), 0),
			coalesce(max(CASE WHEN topic = 'audit' THEN json_extract(body, '$.seq') END), 0) FROM c`, excess).
		Scan(&d.Messages, &d.Bytes, &d.FirstID, &d.LastID, &d.FirstSeq, &d.LastSeq)
	if err != nil {
		return Dropped{}, fmt.Errorf("outbox: choose messages to drop: %w", err)
	}
	if d.Messages == 0 {
		return Dropped{}, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id <= ? AND topic != 'alert'`, d.LastID); err != nil {
		return Dropped{}, fmt.Errorf("outbox: drop oldest: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE outbox_state SET dropped = dropped + ? WHERE id = 1`, d.Messages); err != nil {
		return Dropped{}, fmt.Errorf("outbox: count dropped: %w", err)
	}
	return d, nil
}

// SeenSeq is the highest audit seq any sink has been sent and the highest
// outbox id a sink delivered, beside the highest audit seq and outbox id
// still in the table: after a crash that lost committed rows, a cursor or
// a seen seq above what is left proves receivers hold records the chain
// no longer has.
type SeenSeq struct {
	SentSeq     int64 // max seen_seq over the cursors
	QueuedSeq   int64 // max audit seq in the outbox
	DeliveredID int64 // max cursor
	LastID      int64 // the largest outbox id ever given (sqlite_sequence)
}

// ReadSeen reads the evidence in SeenSeq.
func ReadSeen(ctx context.Context, q rowQueryer) (SeenSeq, error) {
	var s SeenSeq
	err := q.QueryRowContext(ctx, `SELECT
		coalesce((SELECT max(seen_seq) FROM outbox_cursors), 0),
		coalesce((SELECT json_extract(body, '$.seq') FROM outbox WHERE topic = 'audit' ORDER BY id DESC LIMIT 1), 0),
		coalesce((SELECT max(delivered) FROM outbox_cursors), 0),
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)`).
		Scan(&s.SentSeq, &s.QueuedSeq, &s.DeliveredID, &s.LastID)
	if err != nil {
		return SeenSeq{}, fmt.Errorf("read outbox positions: %w", err)
	}
	return s, nil
}

// SkipIDsTx makes the next outbox id larger than every cursor, so that a
// message enqueued after rows were lost is never taken for one a sink
// already delivered.
func SkipIDsTx(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT max(delivered) FROM outbox_cursors), 0))
		WHERE name = 'outbox'`)
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', coalesce((SELECT max(delivered) FROM outbox_cursors), 0)
			WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')`)
	}
	if err != nil {
		return fmt.Errorf("outbox: skip delivered ids: %w", err)
	}
	return nil
}
