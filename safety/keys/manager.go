package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/store"
)

// The actions Manager writes to admin_events.
const (
	ActionCreate = "key.create"
	ActionRotate = "key.rotate"
	ActionRevoke = "key.revoke"
	ActionUpdate = "key.update"
	// ActionSetLimits is no longer written (Update replaced SetLimits);
	// events of older versions still carry it.
	ActionSetLimits = "key.set_limits"
)

// nextVersion is the global change counter every write sets on the row it
// changes, so one SELECT MAX(version) tells a poller whether anything did.
// Writers hold the write lock from BEGIN (store's _txlock=immediate), so two
// writers never compute the same value.
const nextVersion = `(SELECT COALESCE(MAX(version), 0) + 1 FROM keys)`

// Manager changes and reads keys in the database. Each change is one
// transaction that also writes its admin event. It is safe to use from a
// CLI process while a server runs on the same database.
type Manager struct {
	DB  *store.DB
	Now func() time.Time // nil = time.Now
}

// Event is one row of admin_events. Detail never holds a secret or hash.
type Event struct {
	Seq    int64           `json:"seq"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	KeyID  string          `json:"key_id,omitempty"`
	Detail json.RawMessage `json:"detail"`
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Create validates s, stores a new key and returns it with its token. The
// token is the only copy of the secret: the database keeps its hash.
func (m *Manager) Create(ctx context.Context, actor string, s Spec) (Key, string, error) {
	if err := checkActor(actor); err != nil {
		return Key{}, "", err
	}
	s, err := s.normalize()
	if err != nil {
		return Key{}, "", err
	}
	now := m.now()
	id, secret := newID(), newSecret()
	hash := hashSecret(secret)
	var expires *int64
	if s.Expires > 0 {
		ms := now.Add(s.Expires).UnixMilli()
		expires = &ms
	}
	var k Key
	err = m.DB.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO keys
			(id, name, secret_hash, created_at, expires_at, scopes, models, limits, policy, weight, allow_cidrs, require_user, probe, version)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, `+nextVersion+`)`,
			id, s.Name, hash[:], now.UnixMilli(), expires,
			mustJSON(s.Scopes), mustJSON(s.Models), mustJSON(s.Limits), s.Profile, s.Weight, mustJSON(s.AllowCIDRs), s.RequireUser, s.Probe)
		if err != nil {
			return fmt.Errorf("create key: %w", err)
		}
		r, err := getRecord(ctx, m.DB, tx, id)
		if err != nil {
			return err
		}
		k = r.Key
		return m.event(ctx, tx, now, actor, ActionCreate, id, map[string]any{
			"name": k.Name, "scopes": k.Scopes, "models": k.Models, "limits": k.Limits,
			"expires": k.Expires, "weight": k.Weight, "profile": k.Profile, "allow_cidrs": k.AllowCIDRs,
			"require_user": k.RequireUser,
		})
	})
	if err != nil {
		return Key{}, "", err
	}
	return k, format(id, secret), nil
}

// Rotate gives key id a new secret and returns it with its token. The
// previous secret keeps working until now+grace (grace 0: it stops now).
// Rotating again during a grace replaces the previous secret with the one
// being rotated out, so the oldest stops at once.
func (m *Manager) Rotate(ctx context.Context, actor, id string, grace time.Duration) (Key, string, error) {
	if err := checkActor(actor); err != nil {
		return Key{}, "", err
	}
	if grace < 0 {
		return Key{}, "", fmt.Errorf("grace %v is negative", grace)
	}
	now := m.now()
	secret := newSecret()
	hash := hashSecret(secret)
	var k Key
	err := m.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := getRecord(ctx, m.DB, tx, id)
		if err != nil {
			return err
		}
		if r.revoked {
			return fmt.Errorf("rotate %s: %w", id, ErrRevoked)
		}
		var prevHash []byte
		var prevUntil *int64
		if grace > 0 {
			until := now.Add(grace).UnixMilli()
			prevHash, prevUntil = r.hash, &until
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET secret_hash = ?, prev_hash = ?, prev_until = ?,
			rotated_at = ?, version = `+nextVersion+` WHERE id = ?`,
			hash[:], prevHash, prevUntil, now.UnixMilli(), id)
		if err != nil {
			return fmt.Errorf("rotate key %s: %w", id, err)
		}
		if r, err = getRecord(ctx, m.DB, tx, id); err != nil {
			return err
		}
		k = r.Key
		return m.event(ctx, tx, now, actor, ActionRotate, id, map[string]any{
			"grace": grace.String(), "grace_until": k.GraceUntil,
		})
	})
	if err != nil {
		return Key{}, "", err
	}
	return k, format(id, secret), nil
}

// Revoke stops key id now, with any previous secret still in grace.
// Revoking a revoked key changes nothing and writes no event.
func (m *Manager) Revoke(ctx context.Context, actor, id string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	now := m.now()
	return m.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := getRecord(ctx, m.DB, tx, id)
		if err != nil || r.revoked {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET revoked_at = ?, prev_hash = NULL, prev_until = NULL,
			version = `+nextVersion+` WHERE id = ?`, now.UnixMilli(), id)
		if err != nil {
			return fmt.Errorf("revoke key %s: %w", id, err)
		}
		return m.event(ctx, tx, now, actor, ActionRevoke, id, map[string]any{})
	})
}

// Change is an edit of a key's settings; nil fields keep their value.
type Change struct {
	Limits  *Limits
	Weight  *int
	Profile *string
	// AllowCIDRs, when set, replaces the key's client networks; an empty
	// list allows any address again.
	AllowCIDRs *[]string
	// RequireUser, when set, replaces the key's own require_user; ClearRequireUser
	// goes back to the configured default.
	RequireUser      *bool
	ClearRequireUser bool
}

// Validate refuses negative limits, a weight outside 1..MaxWeight, a
// malformed profile name and a client network that is not a CIDR or an
// address.
func (ch Change) Validate() error {
	if ch.AllowCIDRs != nil {
		if _, err := normalizeCIDRs(*ch.AllowCIDRs); err != nil {
			return err
		}
	}
	if ch.Limits != nil {
		if err := ch.Limits.Validate(); err != nil {
			return err
		}
	}
	if ch.Weight != nil {
		if err := checkWeight(*ch.Weight); err != nil {
			return err
		}
	}
	if ch.Profile != nil {
		return checkProfile(strings.TrimSpace(*ch.Profile))
	}
	return nil
}

// Update applies ch to key id in one transaction with one admin event
// (key.update, holding the new and previous value of each field set). It
// is the one edit of a key: `warden keys update` and PATCH /admin/keys/{id}
// call it.
func (m *Manager) Update(ctx context.Context, actor, id string, ch Change) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if err := ch.Validate(); err != nil {
		return err
	}
	var profile string
	if ch.Profile != nil {
		profile = strings.TrimSpace(*ch.Profile)
	}
	var cidrs []string
	if ch.AllowCIDRs != nil {
		cidrs, _ = normalizeCIDRs(*ch.AllowCIDRs) // checked by Validate
	}
	now := m.now()
	return m.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := getRecord(ctx, m.DB, tx, id)
		if err != nil {
			return err
		}
		limits, weight, prof, nets, reqUser := r.Limits, r.Weight, r.Profile, r.AllowCIDRs, r.RequireUser
		detail := map[string]any{}
		if ch.Limits != nil {
			limits = *ch.Limits
			detail["limits"], detail["previous_limits"] = limits, r.Limits
		}
		if ch.Weight != nil {
			weight = *ch.Weight
			detail["weight"], detail["previous_weight"] = weight, r.Weight
		}
		if ch.Profile != nil {
			prof = profile
			detail["profile"], detail["previous_profile"] = prof, r.Profile
		}
		if ch.AllowCIDRs != nil {
			nets = cidrs
			detail["allow_cidrs"], detail["previous_allow_cidrs"] = nets, r.AllowCIDRs
		}
		if ch.RequireUser != nil || ch.ClearRequireUser {
			reqUser = ch.RequireUser
			detail["require_user"], detail["previous_require_user"] = reqUser, r.RequireUser
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET limits = ?, weight = ?, policy = ?, allow_cidrs = ?,
			require_user = ?, version = `+nextVersion+` WHERE id = ?`, mustJSON(limits), weight, prof, mustJSON(nets), reqUser, id)
		if err != nil {
			return fmt.Errorf("update key %s: %w", id, err)
		}
		return m.event(ctx, tx, now, actor, ActionUpdate, id, detail)
	})
}

// Get returns key id, or an error wrapping ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Key, error) {
	r, err := getRecord(ctx, m.DB, m.DB, id)
	return r.Key, err
}

// List returns every key, revoked ones included, oldest first.
func (m *Manager) List(ctx context.Context) ([]Key, error) {
	rs, err := allRecords(ctx, m.DB)
	if err != nil {
		return nil, err
	}
	out := make([]Key, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out, nil
}

// HasKeys reports whether any key was ever created (revoked ones count), so
// the server creates its first admin key once, not after every revoke.
func (m *Manager) HasKeys(ctx context.Context) (bool, error) {
	var ok bool
	if err := m.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM keys)`).Scan(&ok); err != nil {
		return false, fmt.Errorf("count keys: %w", err)
	}
	return ok, nil
}

// Events returns the newest limit admin events, newest first (limit ≤ 0: all).
func (m *Manager) Events(ctx context.Context, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := m.DB.QueryContext(ctx, `SELECT seq, at, actor, action, COALESCE(key_id, ''), detail
		FROM admin_events ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read admin events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		var detail string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.KeyID, &detail); err != nil {
			return nil, fmt.Errorf("read admin events: %w", err)
		}
		e.At, e.Detail = fromMS(at), json.RawMessage(detail)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read admin events: %w", err)
	}
	return out, nil
}

// event writes one admin event in tx, in the admin_events table and, in
// the same transaction, in the audit chain. detail must never hold a secret.
func (m *Manager) event(ctx context.Context, tx *sql.Tx, at time.Time, actor, action, keyID string, detail any) error {
	d := mustJSON(detail)
	_, err := tx.ExecContext(ctx, `INSERT INTO admin_events (at, actor, action, key_id, detail)
		VALUES (?, ?, ?, ?, ?)`, at.UnixMilli(), actor, action, keyID, d)
	if err != nil {
		return fmt.Errorf("write admin event: %w", err)
	}
	chained, err := json.Marshal(struct {
		Actor  string          `json:"actor"`
		Action string          `json:"action"`
		Detail json.RawMessage `json:"detail"`
	}{actor, action, json.RawMessage(d)})
	if err != nil {
		return fmt.Errorf("write admin event: %w", err)
	}
	if _, err := audit.AppendTx(ctx, tx, audit.Record{Time: at, Kind: audit.KindAdmin, KeyID: keyID, Detail: chained}); err != nil {
		return fmt.Errorf("write admin event to the audit trail: %w", err)
	}
	return nil
}

// checkActor refuses an empty or unprintable actor: every change must say who.
func checkActor(actor string) error {
	if actor == "" {
		return errors.New("actor is required (e.g. os:alice or key:<id>)")
	}
	return checkLabel("actor", actor, 128)
}
