package audit

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// The values of Config.StoreText.
const (
	StoreTextNone = "none" // hashes only (default)
	StoreTextFull = "full" // prompt and response, encrypted, in audit_text
	// StoreTextRedacted stores text like full; the server hands it the
	// prompt and answer as they were after the safety filter's redaction.
	StoreTextRedacted = "redacted"
)

// storesText reports whether mode keeps prompt and response text.
func storesText(mode string) bool { return mode == StoreTextFull || mode == StoreTextRedacted }

// ErrNoText reports that no text is stored for a record (never stored, or
// purged).
var ErrNoText = errors.New("no audit text stored for this record")

// textAAD binds a ciphertext to its record and field.
func textAAD(seq int64, field byte) []byte {
	b := make([]byte, 0, 32)
	b = append(b, "warden-audit-text-v1"...)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	return append(b, field)
}

func seal(aead cipher.AEAD, seq int64, field byte, text string) ([]byte, error) {
	if text == "" {
		return nil, nil
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(text)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, []byte(text), textAAD(seq, field)), nil
}

func open(aead cipher.AEAD, seq int64, field byte, blob []byte) (string, error) {
	if len(blob) == 0 {
		return "", nil
	}
	if len(blob) < aead.NonceSize() {
		return "", fmt.Errorf("audit text for seq %d is truncated", seq)
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, blob[:n], blob[n:], textAAD(seq, field))
	if err != nil {
		return "", fmt.Errorf("decrypt audit text for seq %d: %w (wrong %s?)", seq, err, TextKeyFile)
	}
	return string(pt), nil
}

// insertText stores the encrypted text of the records that have any.
func insertText(ctx context.Context, tx *sql.Tx, o *appendOpts, rows []StoredRecord) error {
	for i := range rows {
		s := &rows[i]
		if s.Prompt == "" && s.Response == "" {
			continue
		}
		p, err := seal(o.text, s.Seq, 'p', s.Prompt)
		if err != nil {
			return fmt.Errorf("encrypt audit text: %w", err)
		}
		r, err := seal(o.text, s.Seq, 'r', s.Response)
		if err != nil {
			return fmt.Errorf("encrypt audit text: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_text (seq, at, prompt, response) VALUES (?, ?, ?, ?)`,
			s.Seq, s.Time.UnixMilli(), p, r); err != nil {
			return fmt.Errorf("store audit text: %w", err)
		}
	}
	return nil
}

// ReadText decrypts the prompt and response stored for record seq, for an
// administrator. It returns ErrNoText when none is stored.
func ReadText(ctx context.Context, db *store.DB, dataDir string, seq int64) (prompt, response string, err error) {
	var p, r []byte
	err = db.QueryRowContext(ctx, `SELECT prompt, response FROM audit_text WHERE seq = ?`, seq).Scan(&p, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNoText
	}
	if err != nil {
		return "", "", fmt.Errorf("read audit text: %w", err)
	}
	aead, err := loadTextKey(dataDir, false)
	if err != nil {
		return "", "", err
	}
	if prompt, err = open(aead, seq, 'p', p); err != nil {
		return "", "", err
	}
	if response, err = open(aead, seq, 'r', r); err != nil {
		return "", "", err
	}
	return prompt, response, nil
}

// PurgeText deletes stored text older than before and returns how many
// records lost theirs. The chain is untouched: it only ever held hashes.
func PurgeText(ctx context.Context, db *store.DB, before time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM audit_text WHERE at < ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purge audit text: %w", err)
	}
	return res.RowsAffected()
}
