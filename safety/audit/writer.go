package audit

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

var (
	// ErrNotCommitted wraps every reason a record was not committed (disk
	// full, lock timeout, I/O error, a failing hook): the caller fails closed.
	ErrNotCommitted = errors.New("audit record not committed")
	// ErrClosed reports an Append on a Writer that is closed or not started.
	ErrClosed = errors.New("audit writer not running")
)

// Config tunes a Writer. NewWriter fills zero fields with defaults.
type Config struct {
	// DataDir holds the key files (audit_ed25519.key, audit_text.key).
	DataDir string
	// StoreText is StoreTextNone (default), StoreTextFull or
	// StoreTextRedacted.
	StoreText string
	// MaxBatch caps the records in one transaction (default 512).
	MaxBatch int
	// QueueSize is the pending-record queue's capacity (default 4096).
	QueueSize int
	// CheckpointEvery writes a signed checkpoint after that many records
	// since the last one (default 1000).
	CheckpointEvery int64
	// CheckpointInterval writes one at that period if anything was appended
	// since the last (default 1 minute).
	CheckpointInterval time.Duration
	// Now is the clock for record times (nil = time.Now).
	Now func() time.Time
	// OnCommit runs inside each transaction before COMMIT with the records
	// it appends; an error rolls the batch back and fails its waiters. The
	// records still hold Prompt and Response (their JSON form leaves them
	// out): never forward those fields.
	OnCommit func(tx *sql.Tx, recs []StoredRecord) error
	// OnCheckpoint runs inside the transaction that writes a checkpoint.
	OnCheckpoint func(tx *sql.Tx, c Checkpoint) error
	// Linger bounds how long a record queued with Begin may wait for a
	// transaction someone waits for (default 20ms); see Begin.
	Linger time.Duration
	// CommitDelay bounds how long a record someone waits for (Append, or
	// a Ticket's record after Soon) may wait for the records of other
	// open requests, so that one fsync commits them all (group commit,
	// like PostgreSQL's commit_delay). It waits only while tickets are
	// open that are not yet waiting in the batch, so a lone request
	// never waits. 0 (the default) commits at once; < 0 too.
	CommitDelay time.Duration
	// MaxPageCount, when > 0, is set with PRAGMA max_page_count at the start
	// of every transaction. Tests only: it simulates a full disk. The pragma
	// stays on the pooled connection, so lift it with a large value, not 0.
	MaxPageCount int64
}

// Stats are the Writer's counters since Start.
type Stats struct {
	Records     int64 // records committed
	Commits     int64 // transactions committed
	Failures    int64 // transactions that failed
	Checkpoints int64 // checkpoints written
}

// Writer appends records through one goroutine that group commits: every
// record queued while a transaction runs goes into the next one, and each
// Append returns when its transaction has committed or failed.
type Writer struct {
	db  *store.DB
	cfg Config

	mu      sync.RWMutex
	state   int // 0 new, stateStarting, 1 running, 2 closed
	queue   chan *pending
	kick    chan struct{} // capacity 1: commit what Begin queued, now
	soon    chan struct{} // capacity 1: commit what Begin queued within CommitDelay
	open    atomic.Int64  // tickets begun and not yet ended
	done    chan struct{}
	cancel  context.CancelFunc
	maxPage atomic.Int64

	// Owned by the goroutine after Start.
	priv     ed25519.PrivateKey
	text     cipher.AEAD
	lastCkpt int64
	buf      bytes.Buffer
	// head is the chain's head as this Writer last committed it: the next
	// transaction links to it without reading it (see appendOpts.head).
	head chainHead

	records, commits, failures, checkpoints atomic.Int64
}

type pending struct {
	rec  Record
	done chan result // capacity 1; nil for a Ticket's record
	// A Ticket's record (Begin): it may wait for another transaction,
	// and its outcome goes to fn.
	lazy bool
	fn   func(seq int64, err error)
}

type result struct {
	seq int64
	err error
}

// NewWriter returns a Writer on db; Start it before appending.
func NewWriter(db *store.DB, cfg Config) *Writer {
	if cfg.StoreText == "" {
		cfg.StoreText = StoreTextNone
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 1000
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	cfg.CommitDelay = max(cfg.CommitDelay, 0)
	w := &Writer{db: db, cfg: cfg, kick: make(chan struct{}, 1), soon: make(chan struct{}, 1)}
	w.maxPage.Store(cfg.MaxPageCount)
	return w
}

// SetMaxPageCount changes Config.MaxPageCount for later transactions.
// Tests only.
func (w *Writer) SetMaxPageCount(n int64) { w.maxPage.Store(n) }

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{w.records.Load(), w.commits.Load(), w.failures.Load(), w.checkpoints.Load()}
}

// Start loads (or creates) the key files and starts the goroutine. A
// missing or corrupt key file that existing data depends on is an error
// naming the file.
func (w *Writer) Start(ctx context.Context) error {
	switch w.cfg.StoreText {
	case StoreTextNone, StoreTextFull, StoreTextRedacted:
	default:
		return fmt.Errorf("audit: store_text %q: want %q, %q or %q", w.cfg.StoreText, StoreTextNone, StoreTextFull, StoreTextRedacted)
	}
	w.mu.Lock()
	if w.state != 0 {
		w.mu.Unlock()
		return errors.New("audit writer already started")
	}
	w.state = stateStarting
	w.mu.Unlock()
	if err := w.load(ctx); err != nil {
		w.mu.Lock()
		if w.state == stateStarting {
			w.state = 0
		}
		w.mu.Unlock()
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateStarting {
		return ErrClosed // closed while starting
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.queue = make(chan *pending, w.cfg.QueueSize)
	w.done = make(chan struct{})
	w.state = 1
	go w.run(runCtx)
	return nil
}

// stateStarting marks a Writer whose Start is loading its keys.
const stateStarting = -1

// load reads the checkpoint state and the key files.
func (w *Writer) load(ctx context.Context) error {
	last, err := lastCheckpointSeq(ctx, w.db)
	if err != nil {
		return err
	}
	anyCkpt, err := hasRows(ctx, w.db, `SELECT count(*) FROM (SELECT 1 FROM audit_checkpoints LIMIT 1)`)
	if err != nil {
		return fmt.Errorf("read audit checkpoints: %w", err)
	}
	if w.priv, err = loadSigningKey(w.cfg.DataDir, !anyCkpt); err != nil {
		return err
	}
	if storesText(w.cfg.StoreText) {
		anyText, err := hasRows(ctx, w.db, `SELECT count(*) FROM (SELECT 1 FROM audit_text LIMIT 1)`)
		if err != nil {
			return fmt.Errorf("read audit text: %w", err)
		}
		if w.text, err = loadTextKey(w.cfg.DataDir, !anyText); err != nil {
			return err
		}
	}
	w.lastCkpt = last
	return nil
}

// Append queues rec and waits until the transaction holding it commits,
// returning its seq. Any error means the record is not in the chain,
// except when ctx ends first: then it may still commit.
func (w *Writer) Append(ctx context.Context, rec Record) (int64, error) {
	if err := rec.normalize(w.cfg.Now()); err != nil {
		return 0, err
	}
	p := &pending{rec: rec, done: make(chan result, 1)}
	w.mu.RLock()
	if w.state != 1 {
		w.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case w.queue <- p:
	case <-ctx.Done():
		w.mu.RUnlock()
		return 0, ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case r := <-p.done:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close stops accepting records, commits those queued, writes a final
// checkpoint if anything is new, and waits for the goroutine. If ctx ends
// first, the records not yet committed fail: Close returns ctx's error once
// the transaction in progress (which it cannot interrupt) has ended.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.state != 1 {
		w.state = 2
		w.mu.Unlock()
		return nil
	}
	w.state = 2
	close(w.queue)
	w.mu.Unlock()
	select {
	case <-w.done:
		w.cancel()
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return ctx.Err()
	}
}

func (w *Writer) run(ctx context.Context) {
	defer close(w.done)
	ticker := time.NewTicker(w.cfg.CheckpointInterval)
	defer ticker.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due time.Time // when timer fires; zero while it is stopped
	// batch holds the records queued and not yet committed: between
	// iterations, only records that linger (see linger). Its first lazy
	// record may wait until lazyDue, its first waited-for one (or the
	// lazy ones after Soon) until waitDue; zero while it has none.
	batch := make([]*pending, 0, w.cfg.MaxBatch)
	var lazyDue, waitDue time.Time
	waiting := 0 // the batch's records someone waits for
	// hasten has the batch commit within CommitDelay at the latest.
	hasten := func() {
		if waitDue.IsZero() {
			waitDue = time.Now().Add(w.cfg.CommitDelay)
		}
	}
	add := func(p *pending) {
		batch = append(batch, p)
		switch {
		case !p.lazy:
			waiting++
			hasten()
		case lazyDue.IsZero():
			lazyDue = time.Now().Add(w.cfg.Linger)
		}
	}
	for {
		now := false   // commit batch now, whatever it holds
		force := false // and write a checkpoint if anything is new
		closed := false
		select {
		case p, ok := <-w.queue:
			if ok {
				add(p)
			} else {
				closed = true
			}
		case <-w.kick:
			now = true
		case <-w.soon:
			if len(batch) > 0 {
				hasten()
			}
		case <-timer.C:
			due, now = time.Time{}, true
		case <-ticker.C:
			now, force = true, true
		}
	fill:
		for !closed && len(batch) < w.cfg.MaxBatch {
			select {
			case p, ok := <-w.queue:
				if !ok {
					closed = true
					break fill
				}
				add(p)
			default:
				break fill
			}
		}
		if !now && !closed && len(batch) < w.cfg.MaxBatch {
			if until, ok := w.linger(len(batch), waiting, lazyDue, waitDue); ok {
				if !until.Equal(due) {
					timer.Reset(time.Until(until))
					due = until
				}
				continue
			}
		}
		if !due.IsZero() {
			timer.Stop()
			due = time.Time{}
		}
		lazyDue, waitDue, waiting = time.Time{}, time.Time{}, 0
		if len(batch) == 0 && !force && !closed {
			continue // a kick or a timer for records already committed
		}
		w.commit(ctx, batch, force || closed)
		clear(batch)
		batch = batch[:0]
		if closed {
			return
		}
	}
}

// linger reports whether a batch of queued records (waiting of them
// waited for) may wait for a later transaction, and until when: while
// other requests are open, whose records will come soon, Begin's records
// wait for at most Linger and records someone waits for at most
// CommitDelay. A batch that holds a record of every open request commits
// at once.
func (w *Writer) linger(queued, waiting int, lazyDue, waitDue time.Time) (time.Time, bool) {
	if queued == 0 {
		return time.Time{}, false
	}
	if w.open.Load() <= int64(max(waiting, 1)) {
		return time.Time{}, false
	}
	if waitDue.IsZero() {
		return lazyDue, true
	}
	if w.cfg.CommitDelay == 0 {
		return time.Time{}, false
	}
	if !lazyDue.IsZero() && lazyDue.Before(waitDue) {
		return lazyDue, true
	}
	return waitDue, true
}

// commit writes batch (possibly empty) in one transaction, with a
// checkpoint when due (or, if force, when anything is new), and releases
// the waiters.
func (w *Writer) commit(ctx context.Context, batch []*pending, force bool) {
	seqs, err := w.write(ctx, batch, force)
	if err != nil {
		w.failures.Add(1)
		err = fmt.Errorf("%w: %w", ErrNotCommitted, err)
	} else if len(batch) > 0 {
		w.commits.Add(1)
		w.records.Add(int64(len(batch)))
	}
	for i, p := range batch {
		var r result
		if err != nil {
			r.err = err
		} else {
			r.seq = seqs[i]
		}
		if p.fn != nil {
			p.fn(r.seq, r.err)
		} else {
			p.done <- r
		}
	}
}

func (w *Writer) write(ctx context.Context, batch []*pending, force bool) (_ []int64, err error) {
	defer func() {
		if err != nil {
			w.head.ok = false // the next transaction reads the head
		}
	}()
	// The statements run without ctx's cancellation: given a context
	// that can end, the SQLite driver runs each statement on a goroutine
	// of its own, a handoff per statement on the path of every request.
	// Once ctx has ended (Close's deadline passed), no transaction starts.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if n := w.maxPage.Load(); n > 0 {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n)); err != nil {
			return nil, err
		}
	}
	recs := make([]Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	stored, err := appendTx(ctx, tx, appendOpts{text: w.text, now: w.cfg.Now, buf: &w.buf, head: &w.head}, recs)
	if err != nil {
		return nil, err
	}
	var head int64
	var headHash Hash
	if len(stored) > 0 {
		head, headHash = stored[len(stored)-1].Seq, stored[len(stored)-1].Hash
		if w.cfg.OnCommit != nil {
			if err := w.cfg.OnCommit(tx, stored); err != nil {
				return nil, fmt.Errorf("on commit: %w", err)
			}
		}
	} else {
		if head, headHash, err = readHead(ctx, tx); err != nil {
			return nil, err
		}
	}
	ckpt := head > w.lastCkpt && (force || head-w.lastCkpt >= w.cfg.CheckpointEvery)
	if ckpt {
		c := signCheckpoint(w.priv, CheckpointPeriodic, head, headHash, w.cfg.Now())
		if err := insertCheckpoint(ctx, tx, c); err != nil {
			return nil, err
		}
		if w.cfg.OnCheckpoint != nil {
			if err := w.cfg.OnCheckpoint(tx, c); err != nil {
				return nil, fmt.Errorf("on checkpoint: %w", err)
			}
		}
	}
	if len(stored) == 0 && !ckpt {
		return nil, nil
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	w.head = chainHead{seq: head, hash: headHash, ok: true}
	if ckpt {
		w.lastCkpt = head
		w.checkpoints.Add(1)
	}
	seqs := make([]int64, len(stored))
	for i, s := range stored {
		seqs[i] = s.Seq
	}
	return seqs, nil
}
