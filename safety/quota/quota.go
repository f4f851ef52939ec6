// Package quota holds each API key to its limits: requests and tokens per
// minute, tokens per day and per month, and concurrent requests.
//
// Tokens are reserved at admission, before the model runs: the reservation
// is the caller's upper-bound estimate of the prompt plus the output cap the
// request will be held to. The per-minute token bucket and the day and month
// budgets are all checked against what was used plus what requests in
// flight hold, so concurrent requests can never overshoot a budget. When the
// request ends, Settle charges the backend's real counts and refunds the
// rest of the reservation; Fail (cancelled, failed, no counts) charges all
// of it. A real count above the reservation is charged in full: the
// estimate is meant to be an upper bound, and when it is not (text the
// template adds that the estimate did not see) the key still pays for
// what the backend processed; the budget may then end a little over its
// limit, and the next requests wait for it.
//
// Requests per minute are counted by Count, once per request and before
// anything else is done with it (the server calls it when it authenticates
// the key); Admit checks the token budgets and concurrency.
//
// The caller's prompt estimate should be an upper bound of the real count.
// For a byte-level vocabulary (the demo model) the prompt's byte length
// plus the template's tokens is one.
//
// Day and month usage is kept in the usage table of the store (UTC days and
// months) and survives a restart: the Limiter loads a key's current rows on
// its first use, then keeps them in memory. Settled increments are written
// by one goroutine in group commits (one UPSERT for everything settled since
// the last write); Settle waits for its commit. Admission itself touches no
// SQL.
package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// Limits are one key's quotas. Zero means unlimited.
type Limits struct {
	RPM            int64 // requests per minute
	TPM            int64 // tokens per minute (prompt + output)
	TokensPerDay   int64 // per UTC day
	TokensPerMonth int64 // per UTC month
	Concurrency    int64 // requests in flight at once
}

// Limiter admits requests against per-key limits. It is safe for
// concurrent use; Close flushes usage not yet written.
type Limiter struct {
	now    func() time.Time
	db     *store.DB
	writer *writer
	log    *slog.Logger

	mu   sync.RWMutex
	keys map[subject]*keyState
	// users counts the end users' states in keys; past sweepUsersAt a new
	// one first drops the idle ones (see sweepUsers).
	users   int
	sweepAt int // sweepUsersAt; tests lower it
}

// subject names one set of buckets: a key's own (user ""), or one end
// user's under a delegate key.
type subject struct {
	key, user string
}

// keyState is one key's (or one end user's) counters, guarded by its own
// mutex.
type keyState struct {
	who      subject
	mu       sync.Mutex
	loaded   bool
	seen     int64 // unix ms of the last request counted or admitted (end users)
	dropped  bool  // swept out of Limiter.keys: lockState takes a fresh one
	rpm, tpm bucket
	day      period
	month    period
	inflight int64
}

// Config holds a Limiter's settings; the zero value is usable.
type Config struct {
	// Now is the clock (nil: time.Now); days and months are UTC.
	Now func() time.Time
	// Logger receives failed usage writes, and at debug the estimates
	// below the real count (nil: discard).
	Logger *slog.Logger
}

// New returns a Limiter keeping usage in db.
func New(db *store.DB, cfg Config) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{now: cfg.Now, db: db, writer: newWriter(db, cfg.Logger), log: cfg.Logger, keys: make(map[subject]*keyState), sweepAt: sweepUsersAt}
}

// WriteFailures counts the usage writes that failed since New. A failed
// group commit keeps its increments and is retried, so a failure loses
// nothing unless the Limiter is closed before a retry succeeds.
func (l *Limiter) WriteFailures() int64 {
	return l.writer.failures.Load()
}

// Close writes the usage still pending and stops the writer. Settles after
// Close write synchronously.
func (l *Limiter) Close(ctx context.Context) error {
	return l.writer.close(ctx)
}

func (l *Limiter) state(keyID string) *keyState {
	return l.stateOf(subject{key: keyID})
}

func (l *Limiter) stateOf(who subject) *keyState {
	l.mu.RLock()
	ks := l.keys[who]
	l.mu.RUnlock()
	if ks != nil {
		return ks
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ks = l.keys[who]; ks == nil {
		if who.user != "" {
			if l.users >= l.sweepAt {
				l.sweepUsers()
			}
			l.users++
		}
		ks = &keyState{who: who}
		l.keys[who] = ks
	}
	return ks
}

// lockState returns who's state locked, never one a sweep dropped.
func (l *Limiter) lockState(who subject) *keyState {
	for {
		ks := l.stateOf(who)
		ks.mu.Lock()
		if !ks.dropped {
			return ks
		}
		ks.mu.Unlock()
	}
}

// sweepUsersAt is how many end users' states the Limiter keeps before it
// drops idle ones.
const sweepUsersAt = 50000

// userIdle is how long an end user's state must go unused before a sweep
// may drop it: past a minute the per-minute buckets are full again, and
// the day and month usage is in the database (settled charges are written
// within milliseconds), so a state loaded afresh is the same.
const userIdle = 5 * time.Minute

// sweepUsers drops the states of end users with nothing in flight, not
// seen for userIdle. l.mu is held.
func (l *Limiter) sweepUsers() {
	cutoff := l.now().Add(-userIdle).UnixMilli()
	for who, ks := range l.keys {
		if who.user == "" || !ks.mu.TryLock() {
			continue
		}
		if ks.inflight == 0 && ks.seen < cutoff {
			ks.dropped = true
			delete(l.keys, who)
			l.users--
		}
		ks.mu.Unlock()
	}
}

// load reads the key's (or end user's) usage in the current day and month
// (once per key or user). The user id is only ever a query parameter.
func (l *Limiter) load(ctx context.Context, keyID string, ks *keyState, now time.Time) error {
	ks.day = period{key: dayKey(now), name: dayName(now)}
	ks.month = period{key: monthKey(now), name: monthName(now)}
	q, args := `SELECT period, tokens FROM usage
WHERE key_id = ? AND ((period = 'day' AND bucket = ?) OR (period = 'month' AND bucket = ?))`,
		[]any{keyID, ks.day.name, ks.month.name}
	if ks.who.user != "" {
		q = `SELECT period, tokens FROM user_usage
WHERE key_id = ? AND user_id = ? AND ((period = 'day' AND bucket = ?) OR (period = 'month' AND bucket = ?))`
		args = []any{keyID, ks.who.user, ks.day.name, ks.month.name}
	}
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("load usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		var n int64
		if err := rows.Scan(&p, &n); err != nil {
			return fmt.Errorf("load usage: %w", err)
		}
		switch p {
		case "day":
			ks.day.used = n
		case "month":
			ks.month.used = n
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load usage: %w", err)
	}
	ks.loaded = true
	return nil
}

// roll starts a new day or month bucket when the clock has passed into one.
// Requests admitted in the old bucket still settle into it. A clock that
// steps back keeps the current buckets.
func (ks *keyState) roll(now time.Time) {
	if k := dayKey(now); k > ks.day.key {
		ks.day = period{key: k, name: dayName(now)}
	}
	if k := monthKey(now); k > ks.month.key {
		ks.month = period{key: k, name: monthName(now)}
	}
}

func (ks *keyState) status(lim Limits) Status {
	var s Status
	if lim.RPM > 0 {
		s.LimitRequests = lim.RPM
		s.RemainingRequests = ks.rpm.available()
		s.ResetRequests = ks.rpm.untilFull()
	}
	if lim.TPM > 0 {
		s.LimitTokens = lim.TPM
		s.RemainingTokens = ks.tpm.available()
		s.ResetTokens = ks.tpm.untilFull()
	}
	return s
}

// Admit admits one request for keyID or refuses it with a *LimitError.
// It checks concurrency and the token budgets; the request was counted
// against lim.RPM by Count before.
//
// promptTokens is an upper bound of the prompt's tokens; maxTokens is the
// output cap the request would run with (0 for a request without output,
// such as embeddings); maxTokensStated says the client set it. A stated
// cap the token budgets cannot cover is refused; an unstated one is
// lowered to what remains (Reservation.Lowered), and refused only when
// not even one output token remains after the prompt.
//
// Other errors come from loading the key's usage on its first use.
func (l *Limiter) Admit(ctx context.Context, keyID string, lim Limits, promptTokens, maxTokens int64, maxTokensStated bool) (*Reservation, error) {
	return l.admit(ctx, subject{key: keyID}, lim, promptTokens, maxTokens, maxTokensStated)
}

func (l *Limiter) admit(ctx context.Context, who subject, lim Limits, promptTokens, maxTokens int64, maxTokensStated bool) (*Reservation, error) {
	if promptTokens < 0 || maxTokens < 0 {
		return nil, errors.New("quota: negative token count")
	}
	if maxTokens > math.MaxInt64/2 || promptTokens > math.MaxInt64/2 {
		return nil, errors.New("quota: token count out of range")
	}
	keyID := who.key
	now := l.now()
	ks := l.lockState(who)
	defer ks.mu.Unlock()
	if !ks.loaded {
		if err := l.load(ctx, keyID, ks, now); err != nil {
			return nil, err
		}
	}
	ks.roll(now)
	if who.user != "" {
		ks.seen = max(ks.seen, now.UnixMilli())
	}
	ks.rpm.refill(now, lim.RPM) // for the refusal's status
	ks.tpm.refill(now, lim.TPM)

	var refuse *LimitError
	fail := func(e *LimitError) {
		if refuse == nil || e.RetryAfter > refuse.RetryAfter {
			refuse = e
		}
	}
	if lim.Concurrency > 0 && ks.inflight >= lim.Concurrency {
		fail(&LimitError{Limit: LimitConcurrency, RetryAfter: time.Second, max: lim.Concurrency})
	}

	// need is what must fit in every token budget: the whole reservation
	// when the cap is the client's (or there is no output), else the
	// prompt and at least one output token.
	full := promptTokens + maxTokens
	need := full
	if !maxTokensStated && maxTokens > 0 {
		need = promptTokens + 1
	}
	avail := int64(math.MaxInt64)
	for _, b := range [...]struct {
		name             string
		limit, remaining int64
	}{
		{LimitTokensPerMinute, lim.TPM, ks.tpm.available()},
		{LimitTokensPerDay, lim.TokensPerDay, ks.day.remaining(lim.TokensPerDay)},
		{LimitTokensPerMonth, lim.TokensPerMonth, ks.month.remaining(lim.TokensPerMonth)},
	} {
		if b.limit <= 0 {
			continue
		}
		avail = min(avail, b.remaining)
		if b.remaining >= need {
			continue
		}
		e := &LimitError{Limit: b.name, max: b.limit, remaining: b.remaining, requested: need}
		switch b.name {
		case LimitTokensPerMinute:
			e.RetryAfter = ks.tpm.wait(need)
		case LimitTokensPerDay:
			e.RetryAfter = untilNextDay(now)
		case LimitTokensPerMonth:
			e.RetryAfter = untilNextMonth(now)
		}
		fail(e)
	}
	if refuse != nil {
		refuse.Status = ks.status(lim)
		refuse.User = who.user != ""
		return nil, refuse
	}

	r := &Reservation{l: l, ks: ks, keyID: keyID, user: who.user, cap: maxTokens, tookTPM: lim.TPM > 0, day: ks.day.name, month: ks.month.name}
	if full > avail {
		r.cap, r.lowered = avail-promptTokens, true
	}
	r.reserved = promptTokens + r.cap
	ks.inflight++
	ks.tpm.take(r.reserved)
	ks.day.reserved += r.reserved
	ks.month.reserved += r.reserved
	return r, nil
}

// Count counts one request of keyID against lim.RPM, or refuses it with a
// *LimitError (its Status filled in) when the minute's requests are spent.
// Every request counts, whatever becomes of it. It makes no SQL query.
func (l *Limiter) Count(keyID string, lim Limits) error {
	return l.count(subject{key: keyID}, lim)
}

func (l *Limiter) count(who subject, lim Limits) error {
	if lim.RPM <= 0 && who.user == "" {
		return nil
	}
	now := l.now()
	ks := l.lockState(who)
	defer ks.mu.Unlock()
	if who.user != "" {
		ks.seen = max(ks.seen, now.UnixMilli())
	}
	ks.rpm.refill(now, lim.RPM)
	ks.tpm.refill(now, lim.TPM)
	if ks.rpm.available() < 1 {
		return &LimitError{Limit: LimitRequestsPerMinute, RetryAfter: ks.rpm.wait(1), max: lim.RPM, Status: ks.status(lim), User: who.user != ""}
	}
	ks.rpm.take(1)
	return nil
}

// Status reports keyID's request and token buckets for the x-ratelimit-*
// headers. It makes no SQL query.
func (l *Limiter) Status(keyID string, lim Limits) Status {
	l.mu.RLock()
	ks := l.keys[subject{key: keyID}]
	l.mu.RUnlock()
	if ks == nil {
		// Never seen: both buckets are full.
		s := Status{LimitRequests: max(lim.RPM, 0), LimitTokens: max(lim.TPM, 0)}
		s.RemainingRequests, s.RemainingTokens = s.LimitRequests, s.LimitTokens
		return s
	}
	now := l.now()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.rpm.refill(now, lim.RPM)
	ks.tpm.refill(now, lim.TPM)
	return ks.status(lim)
}
