package quota

import (
	"context"
	"testing"
	"time"
)

func TestUsageReport(t *testing.T) {
	c := newClock("2026-11-22T23:00:00Z")
	l, _ := newLimiter(t, c)
	ctx := context.Background()
	lim := Limits{TokensPerDay: 1000}

	r1 := admit(t, l, "k", lim, 10, 90, true)
	if err := r1.Settle(ctx, 5, 20); err != nil {
		t.Fatal(err)
	}
	admit(t, l, "k", lim, 10, 40, true) // still in flight
	u, err := l.Usage(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{Day: "2026-11-22", Month: "2026-11", TokensToday: 25, TokensThisMonth: 25, ReservedTokens: 50, InFlight: 1}
	if u != want {
		t.Errorf("Usage = %+v, want %+v", u, want)
	}

	// A new day starts empty; the month carries on.
	c.Advance(2 * time.Hour)
	u, err = l.Usage(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if u.Day != "2026-11-23" || u.TokensToday != 0 || u.TokensThisMonth != 25 {
		t.Errorf("after midnight: %+v", u)
	}

	// A key never seen reads the database once and reports nothing used.
	if u, err := l.Usage(ctx, "other"); err != nil || u.TokensToday != 0 || u.InFlight != 0 {
		t.Errorf("unseen key: %+v, %v", u, err)
	}
}
