package audit

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The kinds of checkpoints.
const (
	CheckpointPeriodic = "periodic" // written by the Writer every N records or minutes
	CheckpointPrune    = "prune"    // the anchor Prune leaves: the last pruned row
)

// Checkpoint is a signed statement "the chain had hash Hash at seq Seq".
// Its JSON form is what is forwarded off-host and what Verify's against
// argument is parsed from (ParseCheckpoint).
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	Hash      Hash      `json:"hash"`
	Time      time.Time `json:"time"` // ms precision
	Kind      string    `json:"kind"`
	PublicKey []byte    `json:"public_key"` // ed25519, base64 in JSON
	Signature []byte    `json:"signature"`  // base64 in JSON
}

// ParseCheckpoint decodes a checkpoint's JSON form (unknown fields, such as
// a forwarder's envelope, are ignored).
func ParseCheckpoint(b []byte) (Checkpoint, error) {
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, fmt.Errorf("parse audit checkpoint: %w", err)
	}
	if c.Seq <= 0 || len(c.Signature) != ed25519.SignatureSize {
		return Checkpoint{}, errors.New("parse audit checkpoint: missing seq or signature")
	}
	return c, nil
}

// message is the signed byte string.
func (c *Checkpoint) message() []byte {
	b := make([]byte, 0, 96)
	b = append(b, "warden-audit-checkpoint-v1\x00"...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = append(b, c.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixMilli()))
	return append(b, c.Kind...)
}

// CheckSignature reports whether c is signed by pub.
func (c *Checkpoint) CheckSignature(pub ed25519.PublicKey) error {
	if len(c.Signature) != ed25519.SignatureSize || !ed25519.Verify(pub, c.message(), c.Signature) {
		return errors.New("bad checkpoint signature")
	}
	return nil
}

func signCheckpoint(priv ed25519.PrivateKey, kind string, seq int64, h Hash, now time.Time) Checkpoint {
	c := Checkpoint{
		Seq:       seq,
		Hash:      h,
		Time:      time.UnixMilli(now.UnixMilli()).UTC(),
		Kind:      kind,
		PublicKey: append([]byte(nil), priv.Public().(ed25519.PublicKey)...),
	}
	c.Signature = ed25519.Sign(priv, c.message())
	return c
}

// insertCheckpoint stores c in tx.
func insertCheckpoint(ctx context.Context, tx *sql.Tx, c Checkpoint) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, at, kind, public_key, signature)
		VALUES (?, ?, ?, ?, ?, ?)`, c.Seq, c.Hash[:], c.Time.UnixMilli(), c.Kind, c.PublicKey, c.Signature)
	if err != nil {
		return fmt.Errorf("write audit checkpoint: %w", err)
	}
	return forward(ctx, tx, nil, &c)
}

// loadCheckpoints returns the stored checkpoints in seq order.
func loadCheckpoints(ctx context.Context, q queryer) ([]Checkpoint, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, hash, at, kind, public_key, signature
		FROM audit_checkpoints ORDER BY seq, id`)
	if err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var h []byte
		var at int64
		if err := rows.Scan(&c.Seq, &h, &at, &c.Kind, &c.PublicKey, &c.Signature); err != nil {
			return nil, fmt.Errorf("read audit checkpoints: %w", err)
		}
		if c.Hash, err = hashFrom(h); err != nil {
			return nil, fmt.Errorf("read audit checkpoint at seq %d: %w", c.Seq, err)
		}
		c.Time = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit checkpoints: %w", err)
	}
	return out, nil
}

// lastCheckpointSeq is the seq of the newest checkpoint (0: none).
func lastCheckpointSeq(ctx context.Context, q queryer) (int64, error) {
	var seq sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(seq) FROM audit_checkpoints`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read audit checkpoints: %w", err)
	}
	return seq.Int64, nil
}
