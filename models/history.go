package models

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ollama/ollama/api"
)

// Version is one change of what a name points to.
type Version struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Name   string    `json:"name"`
	Action string    `json:"action"` // pull, import, rollback
	Old    string    `json:"old_digest,omitempty"`
	New    string    `json:"new_digest"`
	Source string    `json:"source,omitempty"`
	Actor  string    `json:"actor"`
	// Kept says the version New is kept (or current) and can be rolled
	// back to; set by History.
	Kept bool `json:"kept"`
}

// History lists the changes of name, newest first, each saying whether
// its version can still be rolled back to.
func (g *Governor) History(ctx context.Context, name string) ([]Version, error) {
	canon, err := canonicalArg(name)
	if err != nil {
		return nil, err
	}
	rows, err := g.DB.QueryContext(ctx, `SELECT seq, at, name, action, old_digest, new_digest, source, actor
		FROM model_history WHERE name = ? ORDER BY seq DESC`, canon)
	if err != nil {
		return nil, fmt.Errorf("read model history: %w", err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		var v Version
		var at int64
		if err := rows.Scan(&v.Seq, &at, &v.Name, &v.Action, &v.Old, &v.New, &v.Source, &v.Actor); err != nil {
			return nil, fmt.Errorf("read model history: %w", err)
		}
		v.At = time.UnixMilli(at).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read model history: %w", err)
	}
	have := map[string]bool{}
	if cur, ok, err := g.current(ctx, canon); err != nil {
		return nil, err
	} else if ok {
		have[cur.Digest] = true
	}
	kept, err := g.kept(ctx, canon)
	if err != nil {
		return nil, err
	}
	for _, k := range kept {
		have[k.Digest] = true
	}
	for i := range out {
		out[i].Kept = have[out[i].New]
	}
	if len(out) == 0 {
		if _, ok, _ := g.current(ctx, canon); !ok {
			return nil, fmt.Errorf("%w: %s (no history either)", ErrNotFound, canon)
		}
	}
	return out, nil
}

// Rollback points name back at a kept version: the digest to (a prefix of
// 12 hex or more), or, when to is "", the version it pointed to before its
// latest change. The version replaced is kept in turn (so a rollback can
// be undone with --to), unloaded from the runner, and a pin on it moves to
// the version restored.
func (g *Governor) Rollback(ctx context.Context, actor, name, to string) (Change, error) {
	canon, err := canonicalArg(name)
	if err != nil {
		return Change{}, err
	}
	if err := checkActor(actor); err != nil {
		return Change{}, err
	}
	cur, err := g.existing(ctx, canon)
	if err != nil {
		return Change{}, err
	}
	if to == "" {
		var old string
		err := g.DB.QueryRowContext(ctx, `SELECT old_digest FROM model_history WHERE name = ? AND new_digest = ?
			ORDER BY seq DESC LIMIT 1`, canon, cur.Digest).Scan(&old)
		if err != nil && err != sql.ErrNoRows {
			return Change{}, fmt.Errorf("read model history: %w", err)
		}
		if old == "" {
			return Change{}, fmt.Errorf("%w: %s has no previous version to roll back to", ErrNoVersion, canon)
		}
		to = old
	}
	if SameDigest(to, cur.Digest) {
		return Change{}, fmt.Errorf("%s is at %s already", canon, short(cur.Digest))
	}
	kept, err := g.kept(ctx, canon)
	if err != nil {
		return Change{}, err
	}
	var target Info
	for _, k := range kept {
		if SameDigest(to, k.Digest) {
			target = k
		}
	}
	if target.Name == "" {
		return Change{}, fmt.Errorf("%w: %s has no kept version with digest %q (see `warden models history %s`)", ErrNoVersion, canon, to, canon)
	}
	ch := Change{Name: canon, Action: ActionRollback, Old: cur.Digest, New: target.Digest, Changed: true}
	if ch.Kept, _, err = g.keepCurrent(ctx, canon, cur); err != nil {
		return Change{}, err
	}
	_ = g.unload(ctx, cur.Name) // not loaded is fine
	// One rename in the models directory when Warden can see it; else the
	// backend's copy (a rewrite of the small manifest file in place).
	replaced := false
	if g.Store.Dir != "" {
		if replaced, err = g.Store.ReplaceManifest(target.Name, cur.Name); err != nil {
			return Change{}, fmt.Errorf("point %s at %s: %w", canon, short(target.Digest), err)
		}
	}
	if !replaced {
		if err := g.Backend.Copy(ctx, &api.CopyRequest{Source: target.Name, Destination: cur.Name}); err != nil {
			return Change{}, fmt.Errorf("point %s at %s: %w", canon, short(target.Digest), err)
		}
	}
	if now, ok, err := g.current(ctx, canon); err != nil || !ok || !SameDigest(now.Digest, target.Digest) {
		return Change{}, fmt.Errorf("point %s at %s: the backend lists %s (%v)", canon, short(target.Digest), short(now.Digest), err)
	}
	defer g.changed()
	pin, from, err := g.pinOf(ctx, canon)
	if err != nil {
		return ch, err
	}
	at := g.now()
	err = g.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_history (at, name, action, old_digest, new_digest, source, actor)
			VALUES (?, ?, 'rollback', ?, ?, ?, ?)`, at.UnixMilli(), canon, ch.Old, ch.New, target.Name, actor); err != nil {
			return fmt.Errorf("record model history: %w", err)
		}
		if from == "database" && SameDigest(pin, ch.Old) {
			if _, err := tx.ExecContext(ctx, `UPDATE model_pins SET digest = ?, at = ?, actor = ? WHERE name = ?`,
				ch.New, at.UnixMilli(), actor, canon); err != nil {
				return fmt.Errorf("move model pin: %w", err)
			}
			ch.PinMoved = true
		}
		return g.event(ctx, tx, at, actor, ActionRollback, canon, ch.New, map[string]any{
			"name": canon, "old_digest": ch.Old, "new_digest": ch.New, "pin_moved": ch.PinMoved,
		})
	})
	if err == nil && from == "config" && !SameDigest(pin, ch.New) {
		ch.PinMismatch = true
	}
	return ch, err
}

// unload asks the backend to drop name from memory (keep_alive 0, no
// prompt: Ollama expires the runner without loading anything).
func (g *Governor) unload(ctx context.Context, name string) error {
	zero := api.Duration{Duration: 0}
	err := g.Backend.Generate(ctx, &api.GenerateRequest{Model: name, KeepAlive: &zero}, func(api.GenerateResponse) error { return nil })
	if err != nil {
		return fmt.Errorf("unload %s: %w", name, err)
	}
	return nil
}

// Unload frees the memory name holds in the backend.
func (g *Governor) Unload(ctx context.Context, name string) error {
	canon, err := canonicalArg(name)
	if err != nil {
		return err
	}
	m, err := g.existing(ctx, canon)
	if err != nil {
		return err
	}
	return g.unload(ctx, m.Name)
}

// Load warms name: the backend loads it (default keep-alive). A model
// that would not be served (outside the allowlist, pin mismatch) is
// refused.
func (g *Governor) Load(ctx context.Context, name string) error {
	canon, err := g.allowedArg(name)
	if err != nil {
		return err
	}
	m, err := g.existing(ctx, canon)
	if err != nil {
		return err
	}
	if pin, _, err := g.pinOf(ctx, canon); err != nil {
		return err
	} else if pin != "" && !SameDigest(pin, m.Digest) {
		return &MismatchError{Name: canon, Pinned: pin, Actual: m.Digest}
	}
	if err := g.Backend.Generate(ctx, &api.GenerateRequest{Model: m.Name}, func(api.GenerateResponse) error { return nil }); err != nil {
		return fmt.Errorf("load %s: %w", canon, err)
	}
	return nil
}

// Remove deletes name and its kept versions from the backend, and its
// pin; the change is recorded.
func (g *Governor) Remove(ctx context.Context, actor, name string) error {
	canon, err := canonicalArg(name)
	if err != nil {
		return err
	}
	if err := checkActor(actor); err != nil {
		return err
	}
	m, err := g.existing(ctx, canon)
	if err != nil {
		return err
	}
	_ = g.unload(ctx, m.Name)
	if err := g.Backend.Delete(ctx, &api.DeleteRequest{Model: m.Name}); err != nil {
		return fmt.Errorf("remove %s: %w", canon, err)
	}
	defer g.changed()
	kept, err := g.kept(ctx, canon)
	if err != nil {
		return err
	}
	var removed []string
	for _, k := range kept {
		if err := g.Backend.Delete(ctx, &api.DeleteRequest{Model: k.Name}); err != nil {
			return fmt.Errorf("remove kept version %s: %w", k.Name, err)
		}
		removed = append(removed, k.Name)
	}
	at := g.now()
	return g.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM model_pins WHERE name = ?`, canon); err != nil {
			return fmt.Errorf("remove model pin: %w", err)
		}
		return g.event(ctx, tx, at, actor, ActionRemove, canon, m.Digest, map[string]any{
			"name": canon, "digest": m.Digest, "kept_removed": removed,
		})
	})
}
