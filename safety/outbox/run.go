package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Options tune an Outbox. Zero fields take the defaults shown.
type Options struct {
	Batch      int           // messages per Send (256)
	MinBackoff time.Duration // first retry delay after a failure (500ms)
	MaxBackoff time.Duration // retry delay cap (1m)
	Poll       time.Duration // how often an idle sink looks for new rows without Notify (2s)
	Now        func() time.Time
	Logger     *slog.Logger // discarded when nil
	// Topics maps a sink's name to the topics it takes; a sink not named
	// here takes every topic.
	Topics map[string][]string
}

func (o *Options) fill() {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Outbox runs the sinks. It owns them: Close closes those that have a
// Close method.
type Outbox struct {
	db    *store.DB
	sinks []Sink
	opts  Options

	mu      sync.Mutex
	started bool
	wakes   []chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns an Outbox delivering db's outbox rows to sinks; Start runs it.
func New(db *store.DB, sinks []Sink, opts Options) *Outbox {
	opts.fill()
	return &Outbox{db: db, sinks: sinks, opts: opts}
}

// Start registers each sink's cursor (a new sink starts from the oldest
// message still in the outbox) and starts one goroutine per sink. They run
// until Close or until ctx is done.
func (o *Outbox) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started {
		return errors.New("outbox already started")
	}
	seen := map[string]bool{}
	for _, s := range o.sinks {
		name := s.Name()
		if name == "" || seen[name] {
			return fmt.Errorf("outbox sink names must be unique and non-empty: %q", name)
		}
		seen[name] = true
		if _, err := o.db.ExecContext(ctx, "INSERT OR IGNORE INTO outbox_cursors (sink) VALUES (?)", name); err != nil {
			return fmt.Errorf("register outbox sink %q: %w", name, err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	o.cancel = cancel
	o.done = make(chan struct{})
	o.started = true
	var wg sync.WaitGroup
	for _, s := range o.sinks {
		wake := make(chan struct{}, 1)
		o.wakes = append(o.wakes, wake)
		wg.Go(func() { o.run(runCtx, s, wake) })
	}
	go func() { wg.Wait(); close(o.done) }()
	return nil
}

// Notify wakes every sink to look for new rows now. It never blocks.
func (o *Outbox) Notify() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Close stops the sinks, waits for their goroutines (or ctx) and closes
// the sinks. Undelivered rows stay in the table for the next start.
func (o *Outbox) Close(ctx context.Context) error {
	o.mu.Lock()
	started, cancel, done := o.started, o.cancel, o.done
	o.mu.Unlock()
	if !started {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close outbox: %w", ctx.Err())
	}
	var errs []error
	for _, s := range o.sinks {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Status reports the progress of this Outbox's sinks, in their order.
func (o *Outbox) Status(ctx context.Context) ([]SinkStatus, error) {
	all, err := ReadStatus(ctx, o.db, o.opts.Now())
	if err != nil {
		return nil, err
	}
	byName := map[string]SinkStatus{}
	for _, s := range all {
		byName[s.Name] = s
	}
	out := make([]SinkStatus, 0, len(o.sinks))
	for _, s := range o.sinks {
		st, ok := byName[s.Name()]
		if !ok {
			st = SinkStatus{Name: s.Name()}
		}
		out = append(out, st)
	}
	return out, nil
}

// run delivers to one sink until ctx is done.
func (o *Outbox) run(ctx context.Context, s Sink, wake <-chan struct{}) {
	log := o.opts.Logger.With("sink", s.Name())
	failures := 0
	for {
		n, err := o.deliver(ctx, s)
		if f, ok := s.(Flusher); ok && err == nil && n == 0 {
			err = f.Flush(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case err != nil:
			failures++
			wait = o.backoff(failures)
			log.Warn("outbox send failed", "err", err, "failures", failures, "retry_in", wait)
			o.recordFailure(ctx, s.Name(), err, failures)
		case n == o.opts.Batch:
			wait = 0 // more rows are waiting
		default:
			wait = o.opts.Poll
		}
		if err == nil && failures > 0 {
			log.Info("outbox sink recovered", "after_failures", failures)
			failures = 0
			o.recordFailure(ctx, s.Name(), nil, 0)
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		if err != nil {
			// Backing off: Notify must not make a busy server hammer a
			// receiver that is down.
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		} else {
			select {
			case <-ctx.Done():
			case <-t.C:
			case <-wake:
			}
		}
		t.Stop()
	}
}

// deliver sends the next batch after the sink's cursor and advances it.
func (o *Outbox) deliver(ctx context.Context, s Sink) (int, error) {
	name := s.Name()
	var cursor int64
	if err := o.db.QueryRowContext(ctx, "SELECT delivered FROM outbox_cursors WHERE sink = ?", name).Scan(&cursor); err != nil {
		return 0, fmt.Errorf("read cursor: %w", err)
	}
	topics := o.opts.Topics[name]
	batch, err := o.read(ctx, cursor, topics)
	if err == nil && len(batch) == 0 && len(topics) > 0 {
		err = o.skip(ctx, name, topics)
	}
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	if err := s.Send(ctx, batch); err != nil {
		return 0, err
	}
	last := batch[len(batch)-1].ID
	// Use a context that outlives a Close racing this update: the batch
	// is out, recording it saves a resend.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// seen_seq keeps the highest audit seq this sink was sent, which
	// truncation detection compares with the chain's head.
	if _, err := o.db.ExecContext(uctx, `UPDATE outbox_cursors SET delivered = max(delivered, ?),
		delivered_at = ?, failures = 0, last_error = '',
		seen_seq = max(seen_seq, coalesce((SELECT max(json_extract(body, '$.seq')) FROM outbox
			WHERE id > ? AND id <= ? AND topic = 'audit'), 0)) WHERE sink = ?`,
		last, o.opts.Now().UnixMilli(), cursor, last, name); err != nil {
		return 0, fmt.Errorf("advance cursor: %w", err)
	}
	return len(batch), nil
}

func (o *Outbox) read(ctx context.Context, cursor int64, topics []string) ([]Delivery, error) {
	q, args := "SELECT id, topic, at, body FROM outbox WHERE id > ?", []any{cursor}
	if len(topics) > 0 {
		q += " AND topic IN (?" + strings.Repeat(",?", len(topics)-1) + ")"
		for _, t := range topics {
			args = append(args, t)
		}
	}
	rows, err := o.db.QueryContext(ctx, q+" ORDER BY id LIMIT ?", append(args, o.opts.Batch)...)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var batch []Delivery
	for rows.Next() {
		var d Delivery
		var at int64
		if err := rows.Scan(&d.ID, &d.Topic, &at, &d.Body); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		d.Time = time.UnixMilli(at).UTC()
		batch = append(batch, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return batch, nil
}

// skip moves a topic-filtered sink's cursor over the rows of other topics
// up to its next row, in one statement, so that a row committed meanwhile
// is never jumped over. Without this a sink that takes only alerts would
// hold back outbox pruning forever.
func (o *Outbox) skip(ctx context.Context, name string, topics []string) error {
	in := "(?" + strings.Repeat(",?", len(topics)-1) + ")"
	args := make([]any, 0, len(topics)+1)
	for _, t := range topics {
		args = append(args, t)
	}
	_, err := o.db.ExecContext(ctx, `UPDATE outbox_cursors SET delivered = max(delivered, coalesce(
		(SELECT max(id) FROM outbox WHERE id > delivered AND id < coalesce(
			(SELECT min(id) FROM outbox WHERE id > delivered AND topic IN `+in+`), 9223372036854775807)),
		delivered)) WHERE sink = ?`, append(args, name)...)
	if err != nil {
		return fmt.Errorf("advance cursor: %w", err)
	}
	return nil
}

// recordFailure persists a sink's failure count and last error for
// Status; a nil cause clears them (the sink recovered).
func (o *Outbox) recordFailure(ctx context.Context, name string, cause error, failures int) {
	var err error
	if cause == nil {
		_, err = o.db.ExecContext(ctx, "UPDATE outbox_cursors SET failures = 0, last_error = '' WHERE sink = ?", name)
	} else {
		msg := cause.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		_, err = o.db.ExecContext(ctx, "UPDATE outbox_cursors SET failures = ?, last_error = ?, error_at = ? WHERE sink = ?",
			failures, msg, o.opts.Now().UnixMilli(), name)
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, sql.ErrConnDone) {
		o.opts.Logger.Warn("outbox record failure", "sink", name, "err", err)
	}
}

// backoff is MinBackoff doubled per failure, capped at MaxBackoff, with
// the upper half jittered so sinks that failed together spread out.
func (o *Outbox) backoff(failures int) time.Duration {
	d := o.opts.MinBackoff
	for i := 1; i < failures && d < o.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}
