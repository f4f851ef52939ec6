package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// keyColumns is the column list every key read selects, in scanRecord's order.
const keyColumns = `id, name, secret_hash, prev_hash, prev_until, created_at, rotated_at,
	expires_at, revoked_at, last_used_at, scopes, models, limits, policy, version, weight, allow_cidrs, require_user, blocked_users, probe`

// record is one row of the keys table.
type record struct {
	Key
	hash      []byte
	prevHash  []byte
	prevUntil sql.NullInt64 // unix ms
	expiresMS int64         // 0 = never
	revoked   bool
	lastMS    int64 // 0 = never used
	version   int64
}

type scanner interface{ Scan(dest ...any) error }

func scanRecord(s scanner) (record, error) {
	var (
		r                               record
		created                         int64
		rotated, expires, revoked, last sql.NullInt64
		scopes, models, limits, cidrs   string
		requireUser                     sql.NullBool
		blocked                         string
	)
	err := s.Scan(&r.ID, &r.Name, &r.hash, &r.prevHash, &r.prevUntil, &created, &rotated,
		&expires, &revoked, &last, &scopes, &models, &limits, &r.Profile, &r.version, &r.Weight, &cidrs, &requireUser, &blocked, &r.Probe)
	if err != nil {
		return record{}, err
	}
	r.Created = fromMS(created)
	r.Rotated = optTime(rotated)
	r.Expires = optTime(expires)
	r.Revoked = optTime(revoked)
	r.LastUsed = optTime(last)
	r.expiresMS = expires.Int64
	r.revoked = revoked.Valid
	r.lastMS = last.Int64
	if r.prevHash != nil && r.prevUntil.Valid {
		r.GraceUntil = optTime(r.prevUntil)
	}
	if err := json.Unmarshal([]byte(scopes), &r.Scopes); err != nil {
		return record{}, fmt.Errorf("key %s: scopes: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(models), &r.Models); err != nil {
		return record{}, fmt.Errorf("key %s: models: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(limits), &r.Limits); err != nil {
		return record{}, fmt.Errorf("key %s: limits: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(cidrs), &r.AllowCIDRs); err != nil {
		return record{}, fmt.Errorf("key %s: allow_cidrs: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(blocked), &r.BlockedUsers); err != nil {
		return record{}, fmt.Errorf("key %s: blocked_users: %w", r.ID, err)
	}
	if requireUser.Valid {
		v := requireUser.Bool
		r.RequireUser = &v
	}
	if r.BlockedUsers == nil {
		r.BlockedUsers = []string{}
	}
	if r.Models == nil {
		r.Models = []string{}
	}
	if r.AllowCIDRs == nil {
		r.AllowCIDRs = []string{}
	}
	return r, nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// getRecord reads one key; ErrNotFound if there is none.
func getRecord(ctx context.Context, db *store.DB, q querier, id string) (record, error) {
	r, err := scanRecord(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
	if err == sql.ErrNoRows {
		return record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return record{}, fmt.Errorf("read key %s: %w", id, err)
	}
	return r, nil
}

// allRecords reads every key, oldest first.
func allRecords(ctx context.Context, db *store.DB) ([]record, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	var out []record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return out, nil
}

func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain types are marshalled
	}
	return string(b)
}
