package quota

import (
	"math"
	"time"
)

// eps absorbs float rounding when a refilled level should be a whole
// number (one minute at 60 RPM is exactly 60 tokens, not 59.999…).
const eps = 1e-6

// bucket is a token bucket of capacity limit refilling continuously at
// limit per minute. A zero limit means the bucket is not in use.
type bucket struct {
	level float64
	limit int64 // capacity at the last refill; 0 = not in use
	last  time.Time
}

// refill brings the bucket to now under the given limit. A limit switched
// on (or first seen) starts full; a clock that goes backwards refills
// nothing.
func (b *bucket) refill(now time.Time, limit int64) {
	if limit <= 0 {
		b.limit = 0
		return
	}
	if b.limit == 0 {
		b.level, b.limit, b.last = float64(limit), limit, now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.level += d.Seconds() * float64(limit) / 60
		b.last = now
	}
	b.limit = limit
	if b.level > float64(limit) {
		b.level = float64(limit)
	}
}

// available is the whole number of tokens in the bucket.
func (b *bucket) available() int64 {
	if b.limit == 0 {
		return math.MaxInt64
	}
	if b.level <= 0 {
		return 0
	}
	return int64(b.level + eps)
}

// take removes n tokens (the caller checked they are there).
func (b *bucket) take(n int64) {
	if b.limit != 0 {
		b.level -= float64(n)
	}
}

// refund returns n tokens, never above the capacity. Adding before the
// next refill gives the same level as refilling first, because both cap
// at the capacity.
func (b *bucket) refund(n int64) {
	if b.limit == 0 || n <= 0 {
		return
	}
	b.level = min(b.level+float64(n), float64(b.limit))
}

// wait is how long until the bucket holds need tokens; a need above the
// capacity waits until the bucket is full.
func (b *bucket) wait(need int64) time.Duration {
	if b.limit == 0 {
		return 0
	}
	want := float64(min(need, b.limit))
	deficit := want - b.level
	if deficit <= eps {
		return 0
	}
	return time.Duration(math.Ceil(deficit * 60 / float64(b.limit) * float64(time.Second)))
}

// untilFull is how long until the bucket is full again.
func (b *bucket) untilFull() time.Duration {
	return b.wait(b.limit)
}

// period is the usage of one day or month bucket in this process's view:
// what was settled there (loaded from the database, then added to) and
// what requests admitted in it still hold.
type period struct {
	key      int    // yyyymmdd or yyyymm, compared on the hot path
	name     string // "2026-11-22" or "2026-11", the usage table's bucket
	used     int64
	reserved int64
}

// remaining is what the budget limit leaves after used and reserved.
func (p *period) remaining(limit int64) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return max(limit-p.used-p.reserved, 0)
}

func dayKey(t time.Time) int {
	y, m, d := t.UTC().Date()
	return y*10000 + int(m)*100 + d
}

func monthKey(t time.Time) int {
	y, m, _ := t.UTC().Date()
	return y*100 + int(m)
}

func dayName(t time.Time) string   { return t.UTC().Format("2006-01-02") }
func monthName(t time.Time) string { return t.UTC().Format("2006-01") }

// untilNextDay is the time from t to the next UTC midnight.
func untilNextDay(t time.Time) time.Duration {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC).Sub(t)
}

// untilNextMonth is the time from t to the start of the next UTC month.
func untilNextMonth(t time.Time) time.Duration {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC).Sub(t)
}
