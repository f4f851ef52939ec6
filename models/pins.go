package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// ErrDigestMismatch is the error of a pinned model whose manifest digest
// is not the pinned one: it is not served.
var ErrDigestMismatch = errors.New("model digest does not match its pin")

// MismatchError says which model is pinned to what, and what it is now.
type MismatchError struct {
	Name   string // canonical
	Pinned string
	Actual string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s is pinned to %s but its manifest is %s", e.Name, short(e.Pinned), short(e.Actual))
}

// Is makes errors.Is(err, ErrDigestMismatch) hold.
func (e *MismatchError) Is(target error) bool { return target == ErrDigestMismatch }

func short(d string) string {
	d = bareDigest(d)
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// loadPin reads canon's pin from the database ("" when none).
func loadPin(ctx context.Context, db *store.DB, canon string) (string, error) {
	if db == nil {
		return "", nil
	}
	var d string
	err := db.QueryRowContext(ctx, `SELECT digest FROM model_pins WHERE name = ?`, canon).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read model pin: %w", err)
	}
	return d, nil
}

// pinOf is canon's pin and where it is set ("database" or "config"), or
// "" when it has none.
func (g *Governor) pinOf(ctx context.Context, canon string) (string, string, error) {
	d, err := loadPin(ctx, g.DB, canon)
	if err != nil || d != "" {
		return d, "database", err
	}
	if d := g.Pins[canon]; d != "" {
		return bareDigest(d), "config", nil
	}
	return "", "", nil
}

// knownDigests are the manifest digests canon has had: now, kept, in its
// history.
func (g *Governor) knownDigests(ctx context.Context, canon string) ([]string, error) {
	var out []string
	if cur, ok, err := g.current(ctx, canon); err != nil {
		return nil, err
	} else if ok {
		out = append(out, cur.Digest)
	}
	kept, err := g.kept(ctx, canon)
	if err != nil {
		return nil, err
	}
	for _, k := range kept {
		out = append(out, k.Digest)
	}
	rows, err := g.DB.QueryContext(ctx, `SELECT old_digest, new_digest FROM model_history WHERE name = ?`, canon)
	if err != nil {
		return nil, fmt.Errorf("read model history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a, b string
		if err := rows.Scan(&a, &b); err != nil {
			return nil, fmt.Errorf("read model history: %w", err)
		}
		out = append(out, a, b)
	}
	return out, rows.Err()
}

// Pin pins canon to digest (default: its current manifest digest; a
// prefix of 12 hex or more of a digest it has had). A pinned name whose
// manifest differs is not served.
func (g *Governor) Pin(ctx context.Context, actor, name, digest string) (string, error) {
	canon, err := canonicalArg(name)
	if err != nil {
		return "", err
	}
	if err := checkActor(actor); err != nil {
		return "", err
	}
	known, err := g.knownDigests(ctx, canon)
	if err != nil {
		return "", err
	}
	if len(known) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNotFound, canon)
	}
	full := ""
	if digest == "" {
		if cur, ok, err := g.current(ctx, canon); err != nil {
			return "", err
		} else if !ok {
			return "", fmt.Errorf("%w: %s (give the digest to pin)", ErrNotFound, canon)
		} else {
			full = cur.Digest
		}
	} else {
		for _, k := range known {
			if k != "" && SameDigest(digest, k) {
				full = bareDigest(k)
				break
			}
		}
		if full == "" {
			return "", fmt.Errorf("%w: %s never had a manifest with digest %q", ErrNoVersion, canon, digest)
		}
	}
	at := g.now()
	err = g.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, at = excluded.at, actor = excluded.actor`,
			canon, full, at.UnixMilli(), actor); err != nil {
			return fmt.Errorf("write model pin: %w", err)
		}
		return g.event(ctx, tx, at, actor, ActionPin, canon, full, map[string]any{"name": canon, "digest": full})
	})
	return full, err
}

// Unpin removes canon's pin from the database ([models.pins] stays).
func (g *Governor) Unpin(ctx context.Context, actor, name string) error {
	canon, err := canonicalArg(name)
	if err != nil {
		return err
	}
	if err := checkActor(actor); err != nil {
		return err
	}
	at := g.now()
	return g.DB.InTx(ctx, func(tx *sql.Tx) error {
		var d string
		err := tx.QueryRowContext(ctx, `DELETE FROM model_pins WHERE name = ? RETURNING digest`, canon).Scan(&d)
		if errors.Is(err, sql.ErrNoRows) {
			if g.Pins[canon] != "" {
				return fmt.Errorf("%s is pinned in [models.pins] of the config, not by `warden models pin`: edit the config", canon)
			}
			return fmt.Errorf("%s is not pinned", canon)
		}
		if err != nil {
			return fmt.Errorf("remove model pin: %w", err)
		}
		return g.event(ctx, tx, at, actor, ActionUnpin, canon, d, map[string]any{"name": canon, "digest": d})
	})
}

// Mismatch is a refused request's model: pinned to one digest, now
// another.
type Mismatch struct {
	Name   string
	Pinned string
	Actual string
	Time   time.Time
}

// Guard decides whether a model the backend has may be served: it must be
// allowed, must not be a kept version, and must have its pinned digest
// when pinned. The server asks it on every request that names a model.
type Guard struct {
	Allow Allowlist
	Pins  map[string]string // [models.pins], canonical name → digest
	DB    *store.DB         // pins set by `warden models pin` (nil: none)
	// OnMismatch is called once per model and wrong digest (again when
	// the digest changes) with the refused model; every refusal also
	// counts in Mismatches.
	OnMismatch func(context.Context, Mismatch)
	Now        func() time.Time

	mu      sync.Mutex
	alerted map[string]string // canonical name → digest alerted about
	refused map[string]int64
}

// Visible reports whether a model called name may be listed and served
// (allowed, not a kept version); pins are checked by Check.
func (g *Guard) Visible(name string) bool {
	return !IsKept(name) && g.Allow.Allowed(name)
}

// Check reports whether m may be served: an error wrapping ErrNotFound for
// a model outside the allowlist or a kept version (as if absent), a
// *MismatchError for a pinned model with another digest.
func (g *Guard) Check(ctx context.Context, m Info) error {
	if !g.Visible(m.Name) {
		return fmt.Errorf("%w: %q", ErrNotFound, m.Name)
	}
	canon, _ := Canonical(m.Name)
	pin, err := loadPin(ctx, g.DB, canon)
	if err != nil {
		return err
	}
	if pin == "" {
		pin = bareDigest(g.Pins[canon])
	}
	if pin == "" || SameDigest(pin, m.Digest) {
		g.mu.Lock()
		delete(g.alerted, canon)
		g.mu.Unlock()
		return nil
	}
	e := &MismatchError{Name: canon, Pinned: pin, Actual: bareDigest(m.Digest)}
	g.mu.Lock()
	if g.refused == nil {
		g.refused, g.alerted = map[string]int64{}, map[string]string{}
	}
	g.refused[canon]++
	first := g.alerted[canon] != e.Actual
	g.alerted[canon] = e.Actual
	g.mu.Unlock()
	if first && g.OnMismatch != nil {
		now := time.Now
		if g.Now != nil {
			now = g.Now
		}
		g.OnMismatch(ctx, Mismatch{Name: canon, Pinned: pin, Actual: e.Actual, Time: now()})
	}
	return e
}

// Mismatches counts the requests refused for a digest mismatch, by
// canonical model name.
func (g *Guard) Mismatches() map[string]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int64, len(g.refused))
	for k, v := range g.refused {
		out[k] = v
	}
	return out
}
