package quota

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// End users under a delegate key have buckets of their own: requests and
// tokens per minute, tokens per day and month, concurrency, with the same
// reservation and settlement rules as a key's. A delegate request is held
// to both its end user's limits and its key's, which still bound the
// key's total; its day and month usage is kept per (key, user) in the
// user_usage table. An end user id is only ever a map key and an SQL
// parameter.

// CountUser counts one request of user under keyID against userLim.RPM,
// as Count does for the key (which the caller counted before).
func (l *Limiter) CountUser(keyID, user string, userLim Limits) error {
	if user == "" {
		return nil
	}
	return l.count(subject{keyID, user}, userLim)
}

// AdmitUser admits one request of user under keyID: first against the
// user's limits, then against the key's with the output cap the user's
// left, so the request holds a reservation in both and the tighter one
// decides the cap. A refusal by either is a *LimitError (User set when it
// was the user's). Settle and Fail of the returned Reservation end both.
// With user "" it is Admit.
func (l *Limiter) AdmitUser(ctx context.Context, keyID string, lim Limits, user string, userLim Limits, promptTokens, maxTokens int64, maxTokensStated bool) (*Reservation, error) {
	if user == "" {
		return l.Admit(ctx, keyID, lim, promptTokens, maxTokens, maxTokensStated)
	}
	ur, err := l.admit(ctx, subject{keyID, user}, userLim, promptTokens, maxTokens, maxTokensStated)
	if err != nil {
		return nil, err
	}
	// A cap the user's budget lowered is no longer the client's: the key's
	// budget may lower it further.
	kr, err := l.admit(ctx, subject{key: keyID}, lim, promptTokens, ur.cap, maxTokensStated && !ur.lowered)
	if err != nil {
		ur.cancel()
		return nil, err
	}
	ur.shrink(kr.cap) // the key's cap is at most the user's
	kr.also = ur
	return kr, nil
}

// UserUsage is one end user's consumption under a key in the current UTC
// day and month: settled tokens (plus, in a server's view, what requests
// in flight hold), and when the user was last seen.
type UserUsage struct {
	User            string     `json:"user"`
	Day             string     `json:"day"`
	Month           string     `json:"month"`
	TokensToday     int64      `json:"tokens_today"`
	TokensThisMonth int64      `json:"tokens_this_month"`
	ReservedTokens  int64      `json:"reserved_tokens"`
	InFlight        int64      `json:"in_flight"`
	LastSeen        *time.Time `json:"last_seen,omitempty"`
}

// ReadUserUsage reads from db the end users seen under keyID this month,
// with their day and month usage at now (UTC), most recently seen first.
// It is what a process without a Limiter (the CLI) can know: nothing in
// flight elsewhere, and charges a running server has not written yet.
func ReadUserUsage(ctx context.Context, db *store.DB, keyID string, now time.Time) ([]UserUsage, error) {
	day, month := dayName(now), monthName(now)
	rows, err := db.QueryContext(ctx, `SELECT user_id,
	SUM(CASE WHEN period = 'day' AND bucket = ? THEN tokens ELSE 0 END),
	SUM(CASE WHEN period = 'month' AND bucket = ? THEN tokens ELSE 0 END),
	MAX(last_seen)
FROM user_usage WHERE key_id = ? AND ((period = 'day' AND bucket = ?) OR (period = 'month' AND bucket = ?))
GROUP BY user_id`, day, month, keyID, day, month)
	if err != nil {
		return nil, fmt.Errorf("read user usage: %w", err)
	}
	defer rows.Close()
	var out []UserUsage
	for rows.Next() {
		u := UserUsage{Day: day, Month: month}
		var seen int64
		if err := rows.Scan(&u.User, &u.TokensToday, &u.TokensThisMonth, &seen); err != nil {
			return nil, fmt.Errorf("read user usage: %w", err)
		}
		if seen > 0 {
			t := time.UnixMilli(seen).UTC()
			u.LastSeen = &t
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user usage: %w", err)
	}
	sortUsers(out)
	return out, nil
}

// UserUsage reports the end users of keyID: those in the database this
// month, and those this Limiter has seen, with what they have in flight.
func (l *Limiter) UserUsage(ctx context.Context, keyID string) ([]UserUsage, error) {
	now := l.now()
	stored, err := ReadUserUsage(ctx, l.db, keyID, now)
	if err != nil {
		return nil, err
	}
	byUser := make(map[string]int, len(stored))
	for i, u := range stored {
		byUser[u.User] = i
	}
	l.mu.RLock()
	var mine []*keyState
	for who, ks := range l.keys {
		if who.key == keyID && who.user != "" {
			mine = append(mine, ks)
		}
	}
	l.mu.RUnlock()
	for _, ks := range mine {
		ks.mu.Lock()
		u := UserUsage{User: ks.who.user, Day: dayName(now), Month: monthName(now), InFlight: ks.inflight}
		if ks.loaded {
			ks.roll(now)
			// This process's view holds its charges before they are written.
			u.TokensToday, u.TokensThisMonth, u.ReservedTokens = ks.day.used, ks.month.used, ks.day.reserved
		}
		seen := ks.seen
		ks.mu.Unlock()
		i, ok := byUser[u.User]
		if !ok {
			if u.InFlight == 0 && seen == 0 {
				continue
			}
			stored = append(stored, u)
			i = len(stored) - 1
			byUser[u.User] = i
		} else if ks.loaded {
			// The database may hold other servers' charges: keep the larger.
			s := &stored[i]
			s.TokensToday = max(s.TokensToday, u.TokensToday)
			s.TokensThisMonth = max(s.TokensThisMonth, u.TokensThisMonth)
			s.ReservedTokens, s.InFlight = u.ReservedTokens, u.InFlight
		} else {
			stored[i].InFlight = u.InFlight
		}
		if seen > 0 && (stored[i].LastSeen == nil || stored[i].LastSeen.UnixMilli() < seen) {
			t := time.UnixMilli(seen).UTC()
			stored[i].LastSeen = &t
		}
	}
	sortUsers(stored)
	return stored, nil
}

// sortUsers puts the most recently seen first, then by id.
func sortUsers(us []UserUsage) {
	slices.SortFunc(us, func(a, b UserUsage) int {
		var at, bt int64
		if a.LastSeen != nil {
			at = a.LastSeen.UnixMilli()
		}
		if b.LastSeen != nil {
			bt = b.LastSeen.UnixMilli()
		}
		if at != bt {
			if at > bt {
				return -1
			}
			return 1
		}
		switch {
		case a.User < b.User:
			return -1
		case a.User > b.User:
			return 1
		}
		return 0
	})
}
