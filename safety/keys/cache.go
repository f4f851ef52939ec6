package keys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// DefaultPollInterval is how often a Cache asks whether a key changed.
const DefaultPollInterval = time.Second

// Cache authenticates requests from an in-memory copy of the keys table.
// Authenticate runs no SQL. One goroutine, owned by the Cache (Start to
// Close), asks SELECT MAX(version) every interval, reloads every key when
// the answer changed, and writes the last-used times gathered since the
// previous tick in one transaction.
type Cache struct {
	// Logger receives reload failures (warn) and rejections (debug, with
	// the key id only); nil discards them. Set it before Start.
	Logger *slog.Logger

	db       *store.DB
	interval time.Duration
	now      func() time.Time

	snap     atomic.Pointer[snapshot]
	reloadMu sync.Mutex // one reload at a time: the poller's or Refresh's

	mu      sync.Mutex // guards the lifecycle fields below
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	baseCtx context.Context
}

// snapshot is one immutable load of the keys table.
type snapshot struct {
	version int64
	keys    map[string]*entry
}

// entry is one key as Authenticate needs it.
type entry struct {
	p         *Principal
	hash      [sha256.Size]byte
	prevHash  [sha256.Size]byte
	prevUntil int64 // unix ms; 0 = no previous secret
	expires   int64 // unix ms; 0 = never
	revoked   bool
	used      *usage // carried across reloads
}

// usage is a key's last use as seen by this process.
type usage struct {
	at      atomic.Int64 // unix ms of the latest successful Authenticate
	flushed atomic.Int64 // the value last written to the database
}

// NewCache returns a Cache over db that polls every interval (≤ 0:
// DefaultPollInterval) and reads the time from now (nil: time.Now).
func NewCache(db *store.DB, interval time.Duration, now func() time.Time) *Cache {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{db: db, interval: interval, now: now}
}

// Start loads every key and starts the poll goroutine; Close stops it.
func (c *Cache) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("keys cache already started")
	}
	if err := c.reload(ctx); err != nil {
		return err
	}
	c.started = true
	c.baseCtx = context.WithoutCancel(ctx)
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go c.poll(ctx)
	return nil
}

// Close stops the poll goroutine, waits for it, and writes the last-used
// times it had not written yet. Call it before closing the DB. It is safe
// to call more than once.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.closed {
		return nil
	}
	c.closed = true
	c.cancel()
	<-c.done
	ctx, cancel := context.WithTimeout(c.baseCtx, 5*time.Second)
	defer cancel()
	return c.flush(ctx)
}

// Authenticate returns the Principal of token, or ErrInvalidKey whatever
// the reason. Expiry and grace are judged against the clock at the call,
// so they need no reload. It runs no SQL and, for a valid key, allocates
// nothing; the Principal is shared and must not be modified.
func (c *Cache) Authenticate(token string) (*Principal, error) {
	id, secret, err := Parse(token)
	if err != nil {
		return nil, ErrInvalidKey // never log the token: it may be a secret
	}
	sum := hashSecret(secret) // before the lookup: unknown ids cost the same
	snap := c.snap.Load()
	if snap == nil {
		return nil, ErrInvalidKey
	}
	e := snap.keys[id]
	if e == nil {
		return c.reject(id, "unknown id")
	}
	now := c.now().UnixMilli()
	cur := subtle.ConstantTimeCompare(sum[:], e.hash[:])
	prev := subtle.ConstantTimeCompare(sum[:], e.prevHash[:])
	switch {
	case cur == 1:
	case prev == 1 && e.prevUntil != 0 && now < e.prevUntil:
	case prev == 1 && e.prevUntil != 0:
		return c.reject(id, "previous secret past its grace")
	default:
		return c.reject(id, "wrong secret")
	}
	if e.revoked {
		return c.reject(id, "revoked")
	}
	if e.expires != 0 && now >= e.expires {
		return c.reject(id, "expired")
	}
	raise(&e.used.at, now)
	return e.p, nil
}

// Weight returns the scheduling weight of key id (1 for an unknown key).
// It runs no SQL and takes no lock: the scheduler asks it under its own.
func (c *Cache) Weight(id string) int {
	if snap := c.snap.Load(); snap != nil {
		if e := snap.keys[id]; e != nil {
			return e.p.Weight
		}
	}
	return DefaultWeight
}

// reject logs why a token was refused (key id only, never the secret) and
// returns the one error callers see.
func (c *Cache) reject(id, reason string) (*Principal, error) {
	if l := c.log(); l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("api key rejected", "key_id", id, "reason", reason)
	}
	return nil, ErrInvalidKey
}

func (c *Cache) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Cache) poll(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.tick(ctx); err != nil && ctx.Err() == nil {
			c.log().Warn("api keys poll failed; serving the keys last loaded", "err", err)
		}
	}
}

// Refresh reloads the keys now if their version moved. The admin API calls
// it after a change so this server applies it at once; other processes'
// changes arrive with the next poll.
func (c *Cache) Refresh(ctx context.Context) error {
	var v int64
	if err := c.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM keys`).Scan(&v); err != nil {
		return fmt.Errorf("poll key version: %w", err)
	}
	if snap := c.snap.Load(); snap == nil || v != snap.version {
		return c.reload(ctx)
	}
	return nil
}

// tick reloads the keys if their version moved, then flushes last-used.
func (c *Cache) tick(ctx context.Context) error {
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	return c.flush(ctx)
}

// reload reads every key (one query: a consistent view without a
// transaction, which would take the write lock) and swaps the snapshot.
func (c *Cache) reload(ctx context.Context) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	rs, err := allRecords(ctx, c.db)
	if err != nil {
		return err
	}
	old := c.snap.Load()
	next := &snapshot{keys: make(map[string]*entry, len(rs))}
	for _, r := range rs {
		next.version = max(next.version, r.version)
		e := &entry{p: newPrincipal(r.Key), revoked: r.revoked, expires: r.expiresMS}
		copy(e.hash[:], r.hash)
		if r.prevHash != nil && r.prevUntil.Valid {
			copy(e.prevHash[:], r.prevHash)
			e.prevUntil = r.prevUntil.Int64
		}
		if old != nil && old.keys[r.ID] != nil {
			e.used = old.keys[r.ID].used
		} else {
			e.used = new(usage)
		}
		// What the database holds is written already (maybe by another
		// server); what this process saw later is still to be written.
		raise(&e.used.flushed, r.lastMS)
		next.keys[r.ID] = e
	}
	c.snap.Store(next)
	c.log().Debug("api keys loaded", "keys", len(rs), "version", next.version)
	return nil
}

// flush writes the last-used times that moved since the previous flush, in
// one transaction. It does not bump version: it is not a change a poller
// needs to see.
func (c *Cache) flush(ctx context.Context) error {
	snap := c.snap.Load()
	if snap == nil {
		return nil
	}
	type pending struct {
		id string
		u  *usage
		at int64
	}
	var todo []pending
	for id, e := range snap.keys {
		if at := e.used.at.Load(); at > e.used.flushed.Load() {
			todo = append(todo, pending{id, e.used, at})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush last used: %w", err)
	}
	defer tx.Rollback()
	for _, p := range todo {
		_, err := tx.ExecContext(ctx, `UPDATE keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`, p.at, p.id, p.at)
		if err != nil {
			return fmt.Errorf("flush last used: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush last used: %w", err)
	}
	for _, p := range todo {
		raise(&p.u.flushed, p.at)
	}
	return nil
}

// raise sets a to v unless a already holds v or more.
func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}
