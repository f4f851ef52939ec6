package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
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
	defer g.pinsChanged()
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
	defer g.pinsChanged()
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

// DefaultPinRefresh is how long a Guard serves the pins it read from the
// database before reading them again (the keys cache's poll interval): a
// pin set or removed by another process (`warden models pin`) is served
// within it.
const DefaultPinRefresh = time.Second

// Guard decides whether a model the backend has may be served: it must be
// allowed, must not be a kept version, and must have its pinned digest
// when pinned. The server asks it on every request that names a model.
//
// Check runs no SQL on most requests: it serves the pins table from a copy
// read at most once per Refresh (by the first request after it expired,
// the others waiting for that one read). Invalidate drops the copy, so a
// change through this process's Governor is served at once.
type Guard struct {
	Allow Allowlist
	Pins  map[string]string // [models.pins], canonical name → digest
	DB    *store.DB         // pins set by `warden models pin` (nil: none)
	// Refresh is how long the database's pins are served from memory
	// before they are read again (0: DefaultPinRefresh).
	Refresh time.Duration
	// OnMismatch is called once per model and wrong digest (again when
	// the digest changes) with the refused model; every refusal also
	// counts in Mismatches.
	OnMismatch func(context.Context, Mismatch)
	Now        func() time.Time

	dbPins atomic.Pointer[pinSet]
	loadMu sync.Mutex // one read of the pins at a time; Invalidate waits for it

	names   atomic.Pointer[map[string]nameVerdict] // copied on write
	namesMu sync.Mutex

	mu       sync.Mutex
	alerted  map[string]string // canonical name → digest alerted about
	nAlerted atomic.Int64      // len(alerted), read without mu
	refused  map[string]int64
}

// pinSet is one read of the model_pins table.
type pinSet struct {
	at     time.Time
	digest map[string]string // canonical name → bare digest
}

// Invalidate makes the next Check read the pins from the database: the
// Governor's OnPinChange, so a pin set through this process is served at
// once.
func (g *Guard) Invalidate() {
	g.loadMu.Lock()
	defer g.loadMu.Unlock()
	g.dbPins.Store(nil)
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// fresh reports whether s may still be served at now.
func (g *Guard) fresh(s *pinSet, now time.Time) bool {
	refresh := g.Refresh
	if refresh <= 0 {
		refresh = DefaultPinRefresh
	}
	return s != nil && !now.Before(s.at) && now.Sub(s.at) < refresh
}

// dbPin is canon's pin in the database ("" when none), from the copy in
// memory while it is fresh.
func (g *Guard) dbPin(ctx context.Context, canon string) (string, error) {
	if g.DB == nil {
		return "", nil
	}
	now := g.now()
	s := g.dbPins.Load()
	if !g.fresh(s, now) {
		var err error
		if s, err = g.loadPins(ctx, now); err != nil {
			return "", err
		}
	}
	return s.digest[canon], nil
}

// loadPins reads every pin (a handful of rows) unless another caller did
// while this one waited.
func (g *Guard) loadPins(ctx context.Context, now time.Time) (*pinSet, error) {
	g.loadMu.Lock()
	defer g.loadMu.Unlock()
	if s := g.dbPins.Load(); g.fresh(s, now) {
		return s, nil
	}
	rows, err := g.DB.QueryContext(ctx, `SELECT name, digest FROM model_pins`)
	if err != nil {
		return nil, fmt.Errorf("read model pins: %w", err)
	}
	defer rows.Close()
	s := &pinSet{at: now, digest: map[string]string{}}
	for rows.Next() {
		var name, d string
		if err := rows.Scan(&name, &d); err != nil {
			return nil, fmt.Errorf("read model pins: %w", err)
		}
		s.digest[name] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read model pins: %w", err)
	}
	g.dbPins.Store(s)
	return s, nil
}

// Visible reports whether a model called name may be listed and served
// (allowed, not a kept version); pins are checked by Check.
func (g *Guard) Visible(name string) bool {
	return g.name(name).visible
}

// nameVerdict is what a model's name alone decides: its canonical form
// and whether it is visible.
type nameVerdict struct {
	canon   string
	visible bool
}

// maxNames bounds the names a Guard remembers (the backend's models, a
// few each); others are judged on every call.
const maxNames = 1024

// name judges name once and remembers the verdict: the allowlist does not
// change while the Guard serves.
func (g *Guard) name(name string) nameVerdict {
	if m := g.names.Load(); m != nil {
		if v, ok := (*m)[name]; ok {
			return v
		}
	}
	canon, _ := Canonical(name)
	v := nameVerdict{canon: canon, visible: !IsKept(name) && g.Allow.Allowed(name)}
	g.namesMu.Lock()
	defer g.namesMu.Unlock()
	old := g.names.Load()
	if old == nil || len(*old) < maxNames {
		next := make(map[string]nameVerdict, 1+lenOf(old))
		if old != nil {
			maps.Copy(next, *old)
		}
		next[name] = v
		g.names.Store(&next)
	}
	return v
}

func lenOf(m *map[string]nameVerdict) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// Check reports whether m may be served: an error wrapping ErrNotFound for
// a model outside the allowlist or a kept version (as if absent), a
// *MismatchError for a pinned model with another digest.
func (g *Guard) Check(ctx context.Context, m Info) error {
	v := g.name(m.Name)
	if !v.visible {
		return fmt.Errorf("%w: %q", ErrNotFound, m.Name)
	}
	canon := v.canon
	pin, err := g.dbPin(ctx, canon)
	if err != nil {
		return err
	}
	if pin == "" {
		pin = bareDigest(g.Pins[canon])
	}
	if pin == "" || SameDigest(pin, m.Digest) {
		if g.nAlerted.Load() > 0 {
			g.mu.Lock()
			delete(g.alerted, canon)
			g.nAlerted.Store(int64(len(g.alerted)))
			g.mu.Unlock()
		}
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
	g.nAlerted.Store(int64(len(g.alerted)))
	g.mu.Unlock()
	if first && g.OnMismatch != nil {
		g.OnMismatch(ctx, Mismatch{Name: canon, Pinned: pin, Actual: e.Actual, Time: g.now()})
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
