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
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	buf := o.buf
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	seq, prev, err := readHead(ctx, tx)
	if err != nil {
		return nil, err
	}
	seq = max(seq, o.minSeq-1)
	stored := make([]StoredRecord, len(recs))
	for i := range recs {
		r := recs[i]
		if err := r.normalize(now()); err != nil {
			return nil, err
		}
		seq++
		h := chainHash(buf, prev, seq, &r)
		stored[i] = StoredRecord{Seq: seq, Record: r, PrevHash: prev, Hash: h}
		prev = h
	}
	for start := 0; start < len(stored); start += rowsPerInsert {
		if err := insertRows(ctx, tx, &o, stored[start:min(start+rowsPerInsert, len(stored))]); err != nil {
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

func insertRows(ctx context.Context, tx *sql.Tx, o *appendOpts, rows []StoredRecord) error {
	var q strings.Builder
	q.WriteString("INSERT INTO audit_records (" + recordColumns + ") VALUES ")
	args := make([]any, 0, 24*len(rows))
	for i := range rows {
		s := &rows[i]
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(recordPlaceholders)
		args = append(args, s.Seq, s.Time.UnixMilli(), string(s.Kind), s.RequestID, s.KeyID,
			s.ClientIP, s.Endpoint, s.Model, s.ModelDigest, s.PromptSHA256, s.ResponseSHA256,
			s.TokensIn, s.TokensOut, s.LatencyMS, s.TTFTMS, s.Status, s.FinishReason,
			string(s.Safety), string(s.Detail), s.PrevHash[:], s.Hash[:], s.EndUser, s.EndUserEmail, s.EndUserName)
	}
	if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("append audit records: %w", err)
	}
	return nil
}
