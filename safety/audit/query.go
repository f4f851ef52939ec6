package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Filter selects records for Query. Zero fields do not filter.
type Filter struct {
	Since    time.Time // records at or after
	Until    time.Time // records before
	KeyID    string
	EndUser  string // records made for this end user of a delegate key
	AfterSeq int64  // records with a greater seq (resume point for tail -f)
	Limit    int    // at most this many (0: no limit)
	// Newest makes Limit keep the newest matching records instead of the
	// oldest; they are still returned in seq order.
	Newest bool
}

// Query returns the records matching f in seq order.
func Query(ctx context.Context, db *store.DB, f Filter) ([]StoredRecord, error) {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, f.Until.UnixMilli())
	}
	if f.KeyID != "" {
		where, args = append(where, "key_id = ?"), append(args, f.KeyID)
	}
	if f.EndUser != "" {
		where, args = append(where, "end_user = ?"), append(args, f.EndUser)
	}
	if f.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, f.AfterSeq)
	}
	q := `SELECT ` + recordColumns + ` FROM audit_records`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Newest {
		q += " ORDER BY seq DESC"
	} else {
		q += " ORDER BY seq"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit records: %w", err)
	}
	defer rows.Close()
	var out []StoredRecord
	for rows.Next() {
		s, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit records: %w", err)
	}
	if f.Newest {
		slices.Reverse(out)
	}
	return out, nil
}

// scanRecord reads one row selected with recordColumns.
func scanRecord(rows *sql.Rows) (StoredRecord, error) {
	var s StoredRecord
	var at int64
	var kind, safety, detail string
	var prev, hash []byte
	err := rows.Scan(&s.Seq, &at, &kind, &s.RequestID, &s.KeyID, &s.ClientIP, &s.Endpoint,
		&s.Model, &s.ModelDigest, &s.PromptSHA256, &s.ResponseSHA256, &s.TokensIn, &s.TokensOut,
		&s.LatencyMS, &s.TTFTMS, &s.Status, &s.FinishReason, &safety, &detail, &prev, &hash,
		&s.EndUser, &s.EndUserEmail, &s.EndUserName)
	if err != nil {
		return s, fmt.Errorf("read audit record: %w", err)
	}
	s.Time = time.UnixMilli(at).UTC()
	s.Kind = Kind(kind)
	if safety != "" {
		s.Safety = json.RawMessage(safety)
	}
	if detail != "" {
		s.Detail = json.RawMessage(detail)
	}
	// A hash of the wrong length is kept truncated or zero-padded: Verify
	// then reports the row as not matching rather than failing to read.
	copy(s.PrevHash[:], prev)
	copy(s.Hash[:], hash)
	return s, nil
}
