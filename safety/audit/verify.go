package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Problem names what is wrong at a broken link.
type Problem string

// The problems Verify reports.
const (
	ProblemHashMismatch       Problem = "hash mismatch"               // the row's content does not match its hash
	ProblemBrokenLink         Problem = "broken link"                 // prev_hash is not the previous row's hash
	ProblemMissingRow         Problem = "missing row"                 // a gap in seq
	ProblemBadSignature       Problem = "bad signature"               // a checkpoint not signed by the key
	ProblemCheckpointMismatch Problem = "checkpoint mismatch"         // the row's hash differs from a checkpoint's
	ProblemTruncated          Problem = "truncated before checkpoint" // the chain ends before a checkpoint's seq
)

// Break is the first broken link Verify found.
type Break struct {
	Seq     int64   `json:"seq"`
	Problem Problem `json:"problem"`
	Detail  string  `json:"detail"`
}

func (b *Break) String() string { return fmt.Sprintf("seq %d: %s: %s", b.Seq, b.Problem, b.Detail) }

// Report is what Verify found. Break is nil when the chain is intact.
type Report struct {
	From        int64  `json:"from"`        // first seq walked (after the pruning anchor, if any)
	To          int64  `json:"to"`          // last seq walked
	Records     int64  `json:"records"`     // rows walked
	Checkpoints int    `json:"checkpoints"` // checkpoints checked
	Anchor      int64  `json:"anchor"`      // seq of the pruning anchor started from (0: genesis)
	Break       *Break `json:"break,omitempty"`
}

// OK reports whether nothing is broken.
func (r *Report) OK() bool { return r.Break == nil }

func (r *Report) note(b *Break) {
	if r.Break == nil || b.Seq < r.Break.Seq {
		r.Break = b
	}
}

// Verify walks the chain from its start (genesis, or the newest pruning
// anchor's seq+1 with the anchor's hash as the previous hash), recomputes
// every hash, checks every checkpoint's signature with the key in dataDir
// and that its hash is the row's at its seq. With against (a checkpoint
// received off-host) it also checks that row against.Seq exists with
// against.Hash, which catches a tail truncated after the last local
// checkpoint (an against older than the pruning anchor cannot be checked
// and is only signature-checked). A broken chain is reported in
// Report.Break with a nil error; the error is for failing to read.
func Verify(ctx context.Context, db *store.DB, dataDir string, against *Checkpoint) (Report, error) {
	return verify(ctx, db, dataDir, against, false)
}

// VerifyTail is the quick check for start-up: it trusts nothing before the
// newest checkpoint, checks that checkpoint's signature and row, and walks
// the rows after it. Its cost is bounded by the checkpoint interval, not
// by the size of the trail.
func VerifyTail(ctx context.Context, db *store.DB, dataDir string) (Report, error) {
	return verify(ctx, db, dataDir, nil, true)
}

func verify(ctx context.Context, db *store.DB, dataDir string, against *Checkpoint, tail bool) (Report, error) {
	var rep Report
	cps, err := loadCheckpoints(ctx, db)
	if err != nil {
		return rep, err
	}
	if against != nil {
		cps = append(cps, *against)
	}
	var pub ed25519.PublicKey
	if len(cps) > 0 {
		priv, err := loadSigningKey(dataDir, false)
		if err != nil {
			return rep, err
		}
		pub = priv.Public().(ed25519.PublicKey)
	}
	if tail && len(cps) > 0 {
		newest := cps[0]
		for _, c := range cps {
			if c.Seq >= newest.Seq {
				newest = c
			}
		}
		cps = []Checkpoint{newest}
	}
	rep.Checkpoints = len(cps)

	// Signatures first; the newest well-signed pruning anchor is the start
	// (for the tail check: the newest checkpoint, whatever its kind).
	var anchor *Checkpoint
	bySeq := map[int64][]*Checkpoint{}
	var maxCkpt *Checkpoint
	for i := range cps {
		c := &cps[i]
		if err := c.CheckSignature(pub); err != nil {
			rep.note(&Break{c.Seq, ProblemBadSignature, fmt.Sprintf("%s checkpoint of %s does not verify with %s", c.Kind, c.Time.Format(time.RFC3339), SigningKeyFile)})
			continue
		}
		if (tail || c.Kind == CheckpointPrune) && (anchor == nil || c.Seq > anchor.Seq) {
			anchor = c
		}
		bySeq[c.Seq] = append(bySeq[c.Seq], c)
		if maxCkpt == nil || c.Seq > maxCkpt.Seq {
			maxCkpt = c
		}
	}
	if rep.Break != nil && tail {
		return rep, nil
	}
	var prev Hash
	next := int64(1)
	if anchor != nil {
		prev, next, rep.Anchor = anchor.Hash, anchor.Seq+1, anchor.Seq
		if anchor.Kind != CheckpointPrune {
			// The anchor's own row must still be there with its hash.
			next = anchor.Seq
			var ph []byte
			err := db.QueryRowContext(ctx, `SELECT prev_hash FROM audit_records WHERE seq = ?`, anchor.Seq).Scan(&ph)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return rep, fmt.Errorf("read audit records: %w", err)
			}
			copy(prev[:], ph)
		}
	}
	rep.From = next
	return rep, walk(ctx, db, &rep, next, prev, bySeq, maxCkpt)
}

// gapAfter reports whether s is a gap record (AppendGapTx) saying that the
// chain jumps after seq after: the only row whose seq may skip numbers.
func gapAfter(s *StoredRecord, after int64) bool {
	if s.Kind != KindGap || s.Seq <= after {
		return false
	}
	var d GapDetail
	return json.Unmarshal(s.Detail, &d) == nil && d.AfterSeq == after && d.SeenSeq < s.Seq
}

// walk checks the rows from seq next on, prev being the hash before them.
func walk(ctx context.Context, db *store.DB, rep *Report, next int64, prev Hash, bySeq map[int64][]*Checkpoint, maxCkpt *Checkpoint) error {
	rows, err := db.QueryContext(ctx, `SELECT `+recordColumns+` FROM audit_records WHERE seq >= ? ORDER BY seq`, next)
	if err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	defer rows.Close()
	var buf bytes.Buffer
	last := next - 1
	for rows.Next() {
		s, err := scanRecord(rows)
		if err != nil {
			return err
		}
		switch {
		case s.Seq != next && !gapAfter(&s, next-1):
			rep.note(&Break{next, ProblemMissingRow, fmt.Sprintf("seq %d to %d are missing", next, s.Seq-1)})
		case s.PrevHash != prev:
			rep.note(&Break{s.Seq, ProblemBrokenLink, fmt.Sprintf("prev_hash %s, previous row's hash %s", s.PrevHash, prev)})
		case chainHash(&buf, prev, s.Seq, &s.Record) != s.Hash:
			rep.note(&Break{s.Seq, ProblemHashMismatch, "the row's content does not match its stored hash"})
		}
		if rep.Break != nil && rep.Break.Seq <= s.Seq {
			break
		}
		for _, c := range bySeq[s.Seq] {
			if c.Hash != s.Hash {
				rep.note(&Break{s.Seq, ProblemCheckpointMismatch, fmt.Sprintf("%s checkpoint of %s says hash %s, the row has %s", c.Kind, c.Time.Format(time.RFC3339), c.Hash, s.Hash)})
			}
		}
		if rep.Break != nil && rep.Break.Seq <= s.Seq {
			break
		}
		rep.Records++
		prev, last, next = s.Hash, s.Seq, s.Seq+1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	rep.To = last
	if rep.Break == nil && maxCkpt != nil && maxCkpt.Seq > last {
		rep.note(&Break{last + 1, ProblemTruncated, fmt.Sprintf("the chain ends at seq %d but a %s checkpoint of %s is at seq %d", last, maxCkpt.Kind, maxCkpt.Time.Format(time.RFC3339), maxCkpt.Seq)})
	}
	return nil
}
