package audit

import (
	"bytes"
	"context"
	"crypto/cipher"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Forwarder is called inside every transaction that adds to the chain,
// before COMMIT: with the records appended (recs) or the checkpoint
// written (ckpt, nil otherwise). Every writer of the chain (the Writer,
// AppendTx callers such as key administration in any process, Prune and
// its anchor, AppendGapTx) goes through appendTx and insertCheckpoint, which
// call it, so no writer can leave a record unforwarded. An error rolls the
// transaction back: the record is not committed. The records still hold
// Prompt and Response (their JSON form leaves them out): never forward
// those fields.
type Forwarder func(ctx context.Context, tx *sql.Tx, recs []StoredRecord, ckpt *Checkpoint) error

var forwarder atomic.Pointer[Forwarder]

// SetForwarder installs f for every chain write in this process (package
// safety/trail installs the outbox's; nil removes it). It is process-wide
// because the chain's writers are: a key command and the server each add to
// the chain with what they link, and each must forward what it adds.
func SetForwarder(f Forwarder) {
	if f == nil {
		forwarder.Store(nil)
		return
	}
	forwarder.Store(&f)
}

// forward runs the installed Forwarder, if any.
func forward(ctx context.Context, tx *sql.Tx, recs []StoredRecord, ckpt *Checkpoint) error {
	f := forwarder.Load()
	if f == nil {
		return nil
	}
	if err := (*f)(ctx, tx, recs, ckpt); err != nil {
		return fmt.Errorf("forward audit records: %w", err)
	}
	return nil
}

// rowsPerInsert bounds one multi-row INSERT (24 variables a row, well under
// SQLite's limit of 32766): a batch costs few cgo calls.
const rowsPerInsert = 64

const recordColumns = `seq, at, kind, request_id, key_id, client_ip, endpoint, model, model_digest,
	prompt_sha256, response_sha256, tokens_in, tokens_out, latency_ms, ttft_ms, status,
	finish_reason, safety, detail, prev_hash, hash, end_user, end_user_email, end_user_name`

const recordPlaceholders = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

// queryer is what reading the head needs: a *sql.Tx or a *sql.DB.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// AppendTx appends recs to the chain inside tx and returns their seqs. tx
// must be a write transaction that took the lock at BEGIN (store's DSN sets
// _txlock=immediate), so the head it reads cannot move before COMMIT: two
// processes appending never fork the chain. Prompt and Response text is
// not stored by AppendTx (only its hash); the Writer stores it when
// configured to.
func AppendTx(ctx context.Context, tx *sql.Tx, recs ...Record) ([]int64, error) {
	stored, err := appendTx(ctx, tx, appendOpts{}, recs)
	if err != nil {
		return nil, err
	}
	seqs := make([]int64, len(stored))
	for i, s := range stored {
		seqs[i] = s.Seq
	}
	return seqs, nil
}

// appendOpts are the Writer's extras to appendTx.
type appendOpts struct {
	text cipher.AEAD // nil: do not store text
	// minSeq, when above the head, is the first seq used (AppendGapTx).
	minSeq int64
	now    func() time.Time
	buf    *bytes.Buffer // reused encoding buffer; nil = a fresh one
	// head, when known, is the head the Writer left: appendTx links to it
	// without reading the head, and its first INSERT adds the rows only if
	// the newest row is still that one (nothing was appended since, by
	// any process); if another writer moved the head, it reads the head
	// and links to it. nil: read the head.
	head *chainHead
}

// chainHead is the chain's last seq and hash as a Writer last committed or
// read them.
type chainHead struct {
	seq  int64
	hash Hash
	ok   bool // known; false after a failed transaction
}

// readHead returns the chain's last seq and hash: the newest row, or the
// newest pruning anchor when every row has been pruned, or (0, zero hash)
// on an empty chain.
func readHead(ctx context.Context, q queryer) (int64, Hash, error) {
	var seq int64
	var b []byte
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&seq, &b)
	if errors.Is(err, sql.ErrNoRows) {
		err = q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_checkpoints
			WHERE kind = 'prune' ORDER BY seq DESC LIMIT 1`).Scan(&seq, &b)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, Hash{}, nil
		}
	}
	if err != nil {
		return 0, Hash{}, fmt.Errorf("read audit chain head: %w", err)
	}
	h, err := hashFrom(b)
	if err != nil {
		return 0, Hash{}, fmt.Errorf("read audit chain head at seq %d: %w", seq, err)
	}
	return seq, h, nil
}

func appendTx(ctx context.Context, tx *sql.Tx, o appendOpts, recs []Record) ([]StoredRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if o.buf == nil {
		o.buf = new(bytes.Buffer)
	}
	var head chainHead
	if o.head != nil && o.head.ok {
		head = *o.head
	} else {
		seq, h, err := readHead(ctx, tx)
		if err != nil {
			return nil, err
		}
		head = chainHead{seq: seq, hash: h, ok: true}
	}
	guessed := o.head != nil && o.head.ok
	stored, err := link(&o, head, recs)
	if err != nil {
		return nil, err
	}
	first := stored[:min(rowsPerInsert, len(stored))]
	var ifHead *int64
	if guessed {
		ifHead = &head.seq
	}
	added, err := insertRows(ctx, tx, &o, first, ifHead)
	if err != nil {
		return nil, err
	}
	if !added {
		// Another process appended since this one's last commit: link to
		// the head it left (the write lock, held since BEGIN, keeps it).
		seq, h, err := readHead(ctx, tx)
		if err != nil {
			return nil, err
		}
		if stored, err = link(&o, chainHead{seq: seq, hash: h, ok: true}, recs); err != nil {
			return nil, err
		}
		first = stored[:min(rowsPerInsert, len(stored))]
		if _, err := insertRows(ctx, tx, &o, first, nil); err != nil {
			return nil, err
		}
	}
	for start := len(first); start < len(stored); start += rowsPerInsert {
		if _, err := insertRows(ctx, tx, &o, stored[start:min(start+rowsPerInsert, len(stored))], nil); err != nil {
			return nil, err
		}
	}
	if o.text != nil {
		if err := insertText(ctx, tx, &o, stored); err != nil {
			return nil, err
		}
	}
	if err := forward(ctx, tx, stored, nil); err != nil {
		return nil, err
	}
	return stored, nil
}

// link numbers and hashes recs as the chain's next records after head.
func link(o *appendOpts, head chainHead, recs []Record) ([]StoredRecord, error) {
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	seq, prev := max(head.seq, o.minSeq-1), head.hash
	stored := make([]StoredRecord, len(recs))
	for i := range recs {
		r := recs[i]
		if err := r.normalize(now()); err != nil {
			return nil, err
		}
		seq++
		h := chainHash(o.buf, prev, seq, &r)
		stored[i] = StoredRecord{Seq: seq, Record: r, PrevHash: prev, Hash: h}
		prev = h
	}
	return stored, nil
}

// insertRows inserts rows in one statement. With ifHead set, it inserts
// them only if the newest row's seq is *ifHead, and reports whether it
// did: the check runs inside the INSERT, no query of its own.
func insertRows(ctx context.Context, tx *sql.Tx, o *appendOpts, rows []StoredRecord, ifHead *int64) (bool, error) {
	args := make([]any, 0, 24*len(rows)+1)
	for i := range rows {
		s := &rows[i]
		args = append(args, s.Seq, s.Time.UnixMilli(), string(s.Kind), s.RequestID, s.KeyID,
			s.ClientIP, s.Endpoint, s.Model, s.ModelDigest, s.PromptSHA256, s.ResponseSHA256,
			s.TokensIn, s.TokensOut, s.LatencyMS, s.TTFTMS, s.Status, s.FinishReason,
			string(s.Safety), string(s.Detail), s.PrevHash[:], s.Hash[:], s.EndUser, s.EndUserEmail, s.EndUserName)
	}
	if ifHead != nil {
		args = append(args, *ifHead)
	}
	res, err := tx.ExecContext(ctx, insertSQL(len(rows), ifHead != nil), args...)
	if err != nil {
		return false, fmt.Errorf("append audit records: %w", err)
	}
	if ifHead == nil {
		return true, nil
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("append audit records: %w", err)
	}
	if n != 0 && n != int64(len(rows)) {
		return false, fmt.Errorf("append audit records: %d of %d rows inserted", n, len(rows))
	}
	return n != 0, nil
}

// insertTexts are the INSERT statements of 1 to rowsPerInsert rows, plain
// and conditional ([n][1]), built once each: the same text each time, so
// SQLite's prepared statement is reused.
var insertTexts [rowsPerInsert + 1][2]atomic.Pointer[string]

// insertSQL is the INSERT of n rows; if conditional, it inserts them only
// when the newest row's seq is its last argument.
func insertSQL(n int, conditional bool) string {
	c := 0
	if conditional {
		c = 1
	}
	if p := insertTexts[n][c].Load(); p != nil {
		return *p
	}
	var q strings.Builder
	q.WriteString("INSERT INTO audit_records (" + recordColumns + ") ")
	if conditional {
		q.WriteString("SELECT * FROM (VALUES ")
	} else {
		q.WriteString("VALUES ")
	}
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(recordPlaceholders)
	}
	if conditional {
		q.WriteString(") WHERE (SELECT max(seq) FROM audit_records) = ?")
	}
	text := q.String()
	insertTexts[n][c].Store(&text)
	return text
}
