// Package outbox delivers everything Warden sends off-host (audit records,
// their signed checkpoints, later safety and GPU alerts) through one
// mechanism: a table in the Warden database and a set of sinks (syslog over
// TLS/TCP/UDP, HTTP webhooks).
//
// Producers call EnqueueTx inside their own transaction, so a record and
// its outbox row commit together and the request path pays one INSERT,
// never a network call. An Outbox runs one goroutine per sink; each reads
// the rows after its own cursor, sends them in order, and advances the
// cursor (persisted in outbox_cursors) only after the sink reports success.
// A sink that fails is retried with exponential backoff, so delivery is at
// least once across restarts and receiver outages: a message can arrive
// twice (after a crash between a send and its cursor update, or a replay
// after a broken connection), never zero times while it stays in the table.
// Receivers deduplicate by content (audit records carry their seq and hash).
//
// Each sink's lag (pending messages, the oldest one's age, the last error)
// is visible through Status, also from another process (ReadStatus).
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Topics Warden sends.
const (
	TopicAudit      = "audit"
	TopicCheckpoint = "checkpoint"
	TopicAlert      = "alert"
)

// Message is one thing to send off-host.
type Message struct {
	Topic string    // TopicAudit, TopicCheckpoint, TopicAlert
	Body  []byte    // JSON
	Time  time.Time // stored with millisecond precision
}

// Delivery is a Message with its outbox id, which only grows: a receiver
// seeing an id it has seen before is seeing a duplicate.
type Delivery struct {
	ID int64
	Message
}

// Sink sends batches off-host. Send returns nil only when the whole batch
// was handed over; on error the outbox sends the same batch again later.
// The outbox calls Send from one goroutine per sink. A Sink that also has
// a Close() error method is closed by Outbox.Close.
type Sink interface {
	Name() string
	Send(ctx context.Context, batch []Delivery) error
}

// Flusher is a Sink that can lose what it already sent (a stream without
// acknowledgements whose connection broke) and re-sends it on Flush. The
// outbox calls Flush when a sink has nothing new to send; an error counts
// as a failed send (backoff, Status).
type Flusher interface {
	Flush(ctx context.Context) error
}

// ErrInvalidMessage reports a message EnqueueTx refuses.
var ErrInvalidMessage = errors.New("invalid outbox message")

// enqueueChunk bounds the rows per INSERT (3 variables each, well under
// SQLite's limit).
const enqueueChunk = 200

// EnqueueTx adds msgs to the outbox inside the caller's transaction, so
// they commit (or roll back) with the caller's own rows. It only INSERTs;
// call Outbox.Notify after the commit to wake the sinks early. Each message
// needs a topic, a time and a valid JSON body: a body no receiver could
// parse would otherwise block its sink forever. It runs one statement per
// 200 messages (it has no *store.DB to Count them: the caller counts).
func EnqueueTx(ctx context.Context, tx *sql.Tx, msgs ...Message) error {
	for i, m := range msgs {
		switch {
		case m.Topic == "":
			return fmt.Errorf("%w: message %d has no topic", ErrInvalidMessage, i)
		case m.Time.IsZero():
			return fmt.Errorf("%w: message %d has no time", ErrInvalidMessage, i)
		case !json.Valid(m.Body):
			return fmt.Errorf("%w: message %d body is not valid JSON", ErrInvalidMessage, i)
		}
	}
	for len(msgs) > 0 {
		n := min(len(msgs), enqueueChunk)
		var q strings.Builder
		q.WriteString("INSERT INTO outbox (topic, at, body) VALUES ")
		args := make([]any, 0, 3*n)
		for i, m := range msgs[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, m.Topic, m.Time.UnixMilli(), string(m.Body))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		msgs = msgs[n:]
	}
	return nil
}

// Prune deletes the messages older than before that every sink with a
// cursor has delivered, and returns how many it deleted. With no cursor at
// all (no sink ever configured) nobody waits for them and they all go. A
// sink removed from the config keeps its cursor, and so holds back pruning,
// until RemoveSink forgets it.
func Prune(ctx context.Context, db *store.DB, before time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM outbox WHERE at < ? AND id <= coalesce(
		(SELECT min(delivered) FROM outbox_cursors), (SELECT max(id) FROM outbox))`,
		before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return res.RowsAffected()
}

// RemoveSink forgets a sink's cursor (a sink taken out of the config), so
// it no longer holds back Prune. Configured again later, it starts over
// from the oldest message still in the outbox.
func RemoveSink(ctx context.Context, db *store.DB, name string) error {
	if _, err := db.ExecContext(ctx, "DELETE FROM outbox_cursors WHERE sink = ?", name); err != nil {
		return fmt.Errorf("remove outbox sink %q: %w", name, err)
	}
	return nil
}

// SinkStatus is one sink's progress.
type SinkStatus struct {
	Name        string
	Delivered   int64         // the largest outbox id delivered (the cursor)
	Pending     int64         // messages not yet delivered
	Oldest      time.Time     // time of the oldest undelivered message; zero when none
	Lag         time.Duration // now - Oldest; zero when nothing is pending
	LastSuccess time.Time     // zero when never
	LastError   string        // empty after a success
	LastErrorAt time.Time
	Failures    int // consecutive failed sends
}

// ReadStatus reports every sink that has a cursor, by name. It only reads
// the database, so `warden audit status` can call it while the server runs.
func ReadStatus(ctx context.Context, db *store.DB, now time.Time) ([]SinkStatus, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.sink, c.delivered, c.delivered_at, c.failures,
		c.last_error, c.error_at,
		(SELECT count(*) FROM outbox o WHERE o.id > c.delivered),
		(SELECT min(o.at) FROM outbox o WHERE o.id > c.delivered)
		FROM outbox_cursors c ORDER BY c.sink`)
	if err != nil {
		return nil, fmt.Errorf("read outbox status: %w", err)
	}
	defer rows.Close()
	var out []SinkStatus
	for rows.Next() {
		var s SinkStatus
		var okAt, errAt, oldest sql.NullInt64
		if err := rows.Scan(&s.Name, &s.Delivered, &okAt, &s.Failures, &s.LastError, &errAt, &s.Pending, &oldest); err != nil {
			return nil, fmt.Errorf("read outbox status: %w", err)
		}
		s.LastSuccess = fromMilli(okAt)
		s.LastErrorAt = fromMilli(errAt)
		if s.Oldest = fromMilli(oldest); !s.Oldest.IsZero() {
			s.Lag = max(now.Sub(s.Oldest), 0)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox status: %w", err)
	}
	return out, nil
}

func fromMilli(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}
