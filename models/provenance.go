package models

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Record is a model version's provenance: where it came from, its
// licence, who brought it in and when, and operators' notes.
type Record struct {
	Name         string    `json:"name"`
	Digest       string    `json:"digest"`
	Source       string    `json:"source"`
	SourceSHA256 string    `json:"source_sha256,omitempty"`
	License      string    `json:"license,omitempty"`
	LicenseSPDX  string    `json:"license_spdx,omitempty"`
	Actor        string    `json:"actor"`
	At           time.Time `json:"at"`
	Notes        []Note    `json:"notes"`
	Current      bool      `json:"current"` // the version the name points to now
}

// Note is an operator's note on a model version.
type Note struct {
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	Note  string    `json:"note"`
}

const recordCols = `name, digest, source, source_sha256, license, license_spdx, actor, at, notes`

func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var at int64
	var notes string
	if err := sc.Scan(&r.Name, &r.Digest, &r.Source, &r.SourceSHA256, &r.License, &r.LicenseSPDX, &r.Actor, &at, &notes); err != nil {
		return Record{}, err
	}
	r.At = time.UnixMilli(at).UTC()
	if err := json.Unmarshal([]byte(notes), &r.Notes); err != nil || r.Notes == nil {
		r.Notes = []Note{}
	}
	return r, nil
}

// record reads the provenance of canon at digest.
func (g *Governor) record(ctx context.Context, canon, digest string) (Record, bool, error) {
	r, err := scanRecord(g.DB.QueryRowContext(ctx, `SELECT `+recordCols+` FROM model_provenance WHERE name = ? AND digest = ?`, canon, bareDigest(digest)))
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read model provenance: %w", err)
	}
	r.Current = true
	return r, true, nil
}

// maxNote bounds one note.
const maxNote = 4096

// Annotate adds an operator's note to the provenance of name's current
// version.
func (g *Governor) Annotate(ctx context.Context, actor, name, note string) error {
	canon, err := canonicalArg(name)
	if err != nil {
		return err
	}
	if err := checkActor(actor); err != nil {
		return err
	}
	note = strings.TrimSpace(note)
	if note == "" || len(note) > maxNote {
		return fmt.Errorf("a note is 1 to %d bytes of text", maxNote)
	}
	cur, err := g.existing(ctx, canon)
	if err != nil {
		return err
	}
	at := g.now()
	return g.DB.InTx(ctx, func(tx *sql.Tx) error {
		// A model that was there before Warden governed it gets a record
		// that says so.
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_provenance (name, digest, source, actor, at)
			VALUES (?, ?, 'unknown (present before Warden recorded it)', ?, ?) ON CONFLICT DO NOTHING`,
			canon, cur.Digest, actor, at.UnixMilli()); err != nil {
			return fmt.Errorf("write model provenance: %w", err)
		}
		n, err := json.Marshal(Note{At: at.UTC(), Actor: actor, Note: note})
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE model_provenance SET notes = json_insert(notes, '$[#]', json(?))
			WHERE name = ? AND digest = ?`, string(n), canon, cur.Digest); err != nil {
			return fmt.Errorf("write model note: %w", err)
		}
		return g.event(ctx, tx, at, actor, ActionAnnotate, canon, cur.Digest, map[string]any{"name": canon, "digest": cur.Digest, "note": note})
	})
}

// Manifest is every provenance record, the versions each name points to
// now marked current: the document `warden models manifest` exports.
func (g *Governor) Manifest(ctx context.Context) ([]Record, error) {
	list, err := g.list(ctx)
	if err != nil {
		return nil, err
	}
	current := map[string]string{}
	for _, m := range list {
		if c, ok := Canonical(m.Name); ok && !IsKept(c) {
			current[c] = m.Digest
		}
	}
	rows, err := g.DB.QueryContext(ctx, `SELECT `+recordCols+` FROM model_provenance ORDER BY name, at`)
	if err != nil {
		return nil, fmt.Errorf("read model provenance: %w", err)
	}
	defer rows.Close()
	out := []Record{}
	seen := map[string]bool{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("read model provenance: %w", err)
		}
		r.Current = current[r.Name] == r.Digest
		seen[r.Name] = seen[r.Name] || r.Current
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read model provenance: %w", err)
	}
	for name, d := range current { // models with no record yet
		if !seen[name] {
			out = append(out, Record{Name: name, Digest: d, Source: "unknown (present before Warden recorded it)", Notes: []Note{}, Current: true})
		}
	}
	return out, nil
}
