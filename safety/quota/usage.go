package quota

import (
	"context"
)

// Usage is one key's consumption in the current UTC day and month, as the
// budgets see it: settled tokens, plus tokens reserved by requests still in
// flight.
type Usage struct {
	Day             string `json:"day"`   // "2026-11-22"
	Month           string `json:"month"` // "2026-11"
	TokensToday     int64  `json:"tokens_today"`
	TokensThisMonth int64  `json:"tokens_this_month"`
	ReservedTokens  int64  `json:"reserved_tokens"`
	InFlight        int64  `json:"in_flight"`
}

// Usage reports keyID's usage. It reads the database only the first time
// the key is seen, as Admit does.
func (l *Limiter) Usage(ctx context.Context, keyID string) (Usage, error) {
	ks := l.state(keyID)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := l.now()
	if !ks.loaded {
		if err := l.load(ctx, keyID, ks, now); err != nil {
			return Usage{}, err
		}
	}
	ks.roll(now)
	return Usage{
		Day:             ks.day.name,
		Month:           ks.month.name,
		TokensToday:     ks.day.used,
		TokensThisMonth: ks.month.used,
		ReservedTokens:  ks.day.reserved,
		InFlight:        ks.inflight,
	}, nil
}
