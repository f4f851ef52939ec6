// Package logonce holds a limiter for repeated log lines: a fault that
// fails every request (a full disk under the audit trail) is logged once
// per interval with the count of its repeats, not once per request.
package logonce

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the interval of a zero Limiter.
const DefaultInterval = 10 * time.Second

// maxKeys bounds the distinct lines remembered; beyond it, lines whose
// interval is over are forgotten (and, if still over, everything).
const maxKeys = 1024

// Limiter logs each distinct line (its level, message and "err" value) at
// most once per Interval. The repeats in between are counted; the next
// line logged for the same key carries the count as "repeated". A zero
// Limiter is ready to use; a nil one logs every line.
type Limiter struct {
	// Interval is the shortest time between two lines of one key
	// (default DefaultInterval).
	Interval time.Duration
	// Now is the clock (nil = time.Now).
	Now func() time.Time

	mu   sync.Mutex
	seen map[key]*entry
}

type key struct {
	level slog.Level
	msg   string
	err   string
}

type entry struct {
	last    time.Time // when the key was last logged
	repeats int64     // lines suppressed since
}

// Log logs msg with args on logger, unless a line with the same level,
// message and "err" value was logged less than Interval ago; then it only
// counts it.
func (l *Limiter) Log(ctx context.Context, logger *slog.Logger, level slog.Level, msg string, args ...any) {
	if l == nil {
		logger.Log(ctx, level, msg, args...)
		return
	}
	if !logger.Enabled(ctx, level) {
		return
	}
	k := key{level: level, msg: msg, err: errArg(args)}
	now := l.now()
	every := l.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[key]*entry{}
	}
	e := l.seen[k]
	if e != nil && now.Sub(e.last) < every {
		e.repeats++
		l.mu.Unlock()
		return
	}
	var repeats int64
	if e == nil {
		l.forget(now, every)
		e = &entry{}
		l.seen[k] = e
	}
	repeats, e.repeats, e.last = e.repeats, 0, now
	l.mu.Unlock()
	if repeats > 0 {
		args = append(args[:len(args):len(args)], "repeated", repeats, "since", every.String())
	}
	logger.Log(ctx, level, msg, args...)
}

// forget drops old keys when the map is full; l.mu is held. Counts
// dropped this way are lost, which bounds memory under a flood of
// distinct errors.
func (l *Limiter) forget(now time.Time, every time.Duration) {
	if len(l.seen) < maxKeys {
		return
	}
	for k, e := range l.seen {
		if now.Sub(e.last) >= every {
			delete(l.seen, k)
		}
	}
	if len(l.seen) >= maxKeys {
		clear(l.seen)
	}
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// errArg is the value of the "err" argument among slog-style args.
func errArg(args []any) string {
	for i := 0; i+1 < len(args); i++ {
		if s, ok := args[i].(string); ok && s == "err" {
			return fmt.Sprint(args[i+1])
		}
		if a, ok := args[i].(slog.Attr); ok {
			if a.Key == "err" {
				return a.Value.String()
			}
			continue
		}
		i++ // skip the value of a key-value pair
	}
	return ""
}
