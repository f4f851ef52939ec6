package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNoGap reports an AppendGapTx with nothing to acknowledge.
var ErrNoGap = errors.New("no gap: nothing seen above the chain's head")

// GapDetail is a gap record's detail: the chain ended at AfterSeq while
// numbers up to SeenSeq had already left the host (forwarded to a sink or
// exported to a daily file), so those records are lost; the gap record
// takes SeenSeq+1, and the chain continues above every number a receiver
// may hold, never giving one of them a second meaning.
type GapDetail struct {
	AfterSeq int64    `json:"after_seq"`
	SeenSeq  int64    `json:"seen_seq"`
	Actor    string   `json:"actor"`
	Evidence []string `json:"evidence,omitempty"`
}

// Head returns the chain's last seq and hash in tx or db (0 on an empty
// chain; the pruning anchor's when every row is pruned).
func Head(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}) (int64, Hash, error) {
	return readHead(ctx, q)
}

// AppendGapTx appends, inside tx, the record acknowledging that the chain
// lost the records after its head up to d.SeenSeq: the record's seq is
// d.SeenSeq+1 and it links to the head's hash. d.AfterSeq is set to the
// head. It returns the record's seq.
func AppendGapTx(ctx context.Context, tx *sql.Tx, d GapDetail, at time.Time) (int64, error) {
	head, _, err := readHead(ctx, tx)
	if err != nil {
		return 0, err
	}
	if d.SeenSeq <= head {
		return 0, fmt.Errorf("%w (head %d, seen %d)", ErrNoGap, head, d.SeenSeq)
	}
	d.AfterSeq = head
	detail, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	stored, err := appendTx(ctx, tx, appendOpts{minSeq: d.SeenSeq + 1}, []Record{{Time: at, Kind: KindGap, Detail: detail}})
	if err != nil {
		return 0, err
	}
	return stored[0].Seq, nil
}
