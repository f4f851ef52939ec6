package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// maxRowsPerStatement keeps one UPSERT well under SQLite's bound-variable
// limit (four per row).
const maxRowsPerStatement = 200

// retryDelay is how long the writer waits before retrying a failed write.
const retryDelay = time.Second

var errClosed = errors.New("quota limiter closed")

// usageRow names one row of the usage table, or of user_usage when user
// is set.
type usageRow struct {
	keyID, user, period, bucket string
}

// batch is one group commit: every increment added while it was open is
// written by one statement, and its waiters learn the outcome together.
type batch struct {
	done chan struct{}
	err  error
}

// writer persists usage increments. Settles add to a pending map; one
// goroutine writes whatever has accumulated in a single UPSERT, so under
// load many requests share one commit. Increments whose write fails stay
// pending and are retried; each failure is logged and counted.
type writer struct {
	db  *store.DB
	log *slog.Logger

	failures atomic.Int64 // failed writes
	failing  int          // failed flushes in a row; run's goroutine only

	mu      sync.Mutex
	pending map[usageRow]int64
	seen    map[usageRow]int64 // user rows: unix ms of the latest charge
	open    *batch             // the batch that pending increments belong to
	closed  bool

	// The maps flush swapped out last time, emptied, and the row lists
	// write sorts them into: reused by run's goroutine.
	sparePending, spareSeen map[usageRow]int64
	scratch                 rowLists

	final  error         // the last flush's outcome, read after done
	kick   chan struct{} // capacity 1: "there is work"
	now    chan struct{} // capacity 1: "someone waits for it: write it now"
	stop   chan struct{} // closed by close
	done   chan struct{} // closed when the goroutine exits
	cancel context.CancelFunc
}

func newWriter(db *store.DB, log *slog.Logger) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{
		db:      db,
		log:     log,
		pending: make(map[usageRow]int64),
		seen:    make(map[usageRow]int64),
		open:    &batch{done: make(chan struct{})},
		kick:    make(chan struct{}, 1),
		now:     make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		cancel:  cancel,
	}
	go w.run(ctx)
	return w
}

// add queues tokens for the day and month rows and returns the batch that
// will write them: within gatherFor, or at once when ctx is live (the
// caller waits for the write). After close it writes synchronously.
func (w *writer) add(ctx context.Context, keyID, user, day, month string, tokens, at int64) (*batch, error) {
	d := usageRow{keyID, user, "day", day}
	m := usageRow{keyID, user, "month", month}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		rows := map[usageRow]int64{d: tokens, m: tokens}
		seen := map[usageRow]int64{d: at, m: at}
		if _, err := w.write(context.WithoutCancel(ctx), rows, seen, new(rowLists)); err != nil {
			w.failures.Add(1)
			w.log.Error("save usage after close failed; this charge is lost", "key_id", keyID, "tokens", tokens, "err", err)
			return nil, fmt.Errorf("save usage after close: %w", err)
		}
		return nil, nil
	}
	w.pending[d] += tokens
	w.pending[m] += tokens
	if user != "" {
		w.seen[d] = max(w.seen[d], at)
		w.seen[m] = max(w.seen[m], at)
	}
	b := w.open
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	if ctx.Err() == nil {
		// The caller waits for the write (Settle with a live ctx).
		select {
		case w.now <- struct{}{}:
		default:
		}
	}
	return b, nil
}

// gatherFor is how long the writer gathers increments after the first
// before it writes them. Written one request at a time, every answer would
// cost a commit (an fsync) of its own, and that transaction would hold the
// database's write lock while the next answer's audit record waits for
// it. A crash loses at most this much of the charges (which memory
// enforced); Close writes everything.
const gatherFor = 100 * time.Millisecond

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	var retry <-chan time.Time
	gather := time.NewTimer(gatherFor)
	gather.Stop()
	for {
		select {
		case <-w.kick:
			gather.Reset(gatherFor)
			select {
			case <-gather.C:
			case <-w.now:
				gather.Stop()
			case <-w.stop:
				gather.Stop()
				w.final = w.flush(ctx)
				return
			}
		case <-w.now:
		case <-retry:
		case <-w.stop:
			w.final = w.flush(ctx)
			return
		}
		retry = nil
		if w.flush(ctx) != nil {
			retry = time.After(retryDelay)
		}
	}
}

// flush writes everything pending in one go and releases its waiters.
func (w *writer) flush(ctx context.Context) error {
	w.mu.Lock()
	if len(w.pending) == 0 {
		w.mu.Unlock()
		return nil
	}
	rows, seen, b := w.pending, w.seen, w.open
	w.pending, w.seen = w.sparePending, w.spareSeen
	if w.pending == nil {
		w.pending, w.seen = make(map[usageRow]int64, len(rows)), make(map[usageRow]int64)
	}
	w.open = &batch{done: make(chan struct{})}
	w.mu.Unlock()

	failed, err := w.write(ctx, rows, seen, &w.scratch)
	if err != nil {
		w.mu.Lock()
		for r, n := range failed {
			w.pending[r] += n
			if at, ok := seen[r]; ok {
				w.seen[r] = max(w.seen[r], at)
			}
		}
		w.mu.Unlock()
		b.err = fmt.Errorf("save usage: %w", err)
		w.failures.Add(1)
		w.failing++
		w.log.Warn("save usage failed; retrying", "rows", len(failed), "attempt", w.failing, "retry_in", retryDelay, "err", err)
	} else if w.failing > 0 {
		w.log.Info("saved usage after failed attempts", "attempts", w.failing+1)
		w.failing = 0
	}
	close(b.done)
	clear(rows)
	clear(seen)
	w.sparePending, w.spareSeen = rows, seen
	return err
}

// rowLists are the rows of one write, keys' and end users', and the
// statement's arguments: kept between writes so a write allocates little.
type rowLists struct {
	keys, users []usageRow
	args        []any
}

// write upserts rows, at most maxRowsPerStatement per statement, and
// returns the rows it could not write. Key rows go to usage, end users'
// rows (with the time seen) to user_usage. sc is the caller's scratch
// space.
func (w *writer) write(ctx context.Context, rows, seen map[usageRow]int64, sc *rowLists) (map[usageRow]int64, error) {
	list, users := sc.keys[:0], sc.users[:0]
	defer func() {
		clear(list)
		clear(users)
		clear(sc.args)
		sc.keys, sc.users, sc.args = list[:0], users[:0], sc.args[:0]
	}()
	for r, n := range rows {
		switch {
		case n == 0:
		case r.user != "":
			users = append(users, r)
		default:
			list = append(list, r)
		}
	}
	if failed, err := w.writeUsers(ctx, users, rows, seen, sc); err != nil {
		for _, r := range list {
			failed[r] = rows[r]
		}
		return failed, err
	}
	for start := 0; start < len(list); start += maxRowsPerStatement {
		chunk := list[start:min(start+maxRowsPerStatement, len(list))]
		args := sc.args[:0]
		for _, r := range chunk {
			args = append(args, r.keyID, r.period, r.bucket, rows[r])
		}
		sc.args = args
		if _, err := w.db.ExecContext(ctx, upsertSQL(&keySQL, len(chunk)), args...); err != nil {
			failed := make(map[usageRow]int64, len(list)-start)
			for _, r := range list[start:] {
				failed[r] = rows[r]
			}
			return failed, err
		}
	}
	return nil, nil
}

// writeUsers upserts end users' rows; on failure it returns them all.
func (w *writer) writeUsers(ctx context.Context, list []usageRow, rows, seen map[usageRow]int64, sc *rowLists) (map[usageRow]int64, error) {
	for start := 0; start < len(list); start += maxRowsPerStatement {
		chunk := list[start:min(start+maxRowsPerStatement, len(list))]
		args := sc.args[:0]
		for _, r := range chunk {
			args = append(args, r.keyID, r.user, r.period, r.bucket, rows[r], seen[r])
		}
		sc.args = args
		if _, err := w.db.ExecContext(ctx, upsertSQL(&userSQL, len(chunk)), args...); err != nil {
			failed := make(map[usageRow]int64, len(list)-start)
			for _, r := range list[start:] {
				failed[r] = rows[r]
			}
			return failed, err
		}
	}
	return nil, nil
}

// upsertStatement is one table's UPSERT of n rows, built once per n: the
// same text each time, so SQLite's prepared statement is reused.
type upsertStatement struct {
	head, row, tail string
	text            [maxRowsPerStatement + 1]atomic.Pointer[string]
}

var (
	keySQL = upsertStatement{
		head: "INSERT INTO usage (key_id, period, bucket, tokens) VALUES ",
		row:  "(?, ?, ?, ?)",
		tail: " ON CONFLICT (key_id, period, bucket) DO UPDATE SET tokens = tokens + excluded.tokens",
	}
	userSQL = upsertStatement{
		head: "INSERT INTO user_usage (key_id, user_id, period, bucket, tokens, last_seen) VALUES ",
		row:  "(?, ?, ?, ?, ?, ?)",
		tail: ` ON CONFLICT (key_id, user_id, period, bucket) DO UPDATE SET
	tokens = tokens + excluded.tokens, last_seen = MAX(last_seen, excluded.last_seen)`,
	}
)

// upsertSQL is st's statement for n rows (1 ≤ n ≤ maxRowsPerStatement).
func upsertSQL(st *upsertStatement, n int) string {
	if p := st.text[n].Load(); p != nil {
		return *p
	}
	var q strings.Builder
	q.WriteString(st.head)
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(st.row)
	}
	q.WriteString(st.tail)
	text := q.String()
	st.text[n].Store(&text)
	return text
}

// close stops accepting queued increments, writes what is pending and
// waits for the goroutine. If ctx ends first the write in progress is
// abandoned.
func (w *writer) close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
		w.cancel()
		<-w.done
	}
	w.cancel()
	w.mu.Lock()
	lost := len(w.pending)
	w.mu.Unlock()
	if lost > 0 {
		if err == nil {
			err = w.final
		}
		if err == nil {
			err = errClosed
		}
		return fmt.Errorf("close quota: %d usage rows not saved: %w", lost, err)
	}
	return nil
}
