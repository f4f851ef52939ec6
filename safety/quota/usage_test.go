package quota

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestDayRollover(t *testing.T) {
	c := newClock("2026-11-22T23:59:00Z")
	l, db := newLimiter(t, c)
	lim := Limits{TokensPerDay: 100, TokensPerMonth: 1000}
	settle(t, admit(t, l, "k", lim, 100, 0, true), 100, 0)
	refused(t, l, "k", lim, 1, 0, true, LimitTokensPerDay)
	c.Advance(59 * time.Second)
	refused(t, l, "k", lim, 1, 0, true, LimitTokensPerDay)
	c.Advance(time.Second) // 2026-11-23T00:00:00Z
	r := admit(t, l, "k", lim, 100, 0, true)
	settle(t, r, 60, 0)
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 100 {
		t.Errorf("2026-11-22 usage = %d, want 100", got)
	}
	if got := dbUsage(t, db, "k", "day", "2026-11-23"); got != 60 {
		t.Errorf("2026-11-23 usage = %d, want 60", got)
	}
	if got := dbUsage(t, db, "k", "month", "2026-11"); got != 160 {
		t.Errorf("month usage = %d, want 160 (the month did not roll)", got)
	}
}

func TestMonthRollover(t *testing.T) {
	c := newClock("2026-11-30T23:00:00Z")
	l, db := newLimiter(t, c)
	lim := Limits{TokensPerMonth: 500}
	settle(t, admit(t, l, "k", lim, 500, 0, true), 500, 0)
	e := refused(t, l, "k", lim, 1, 0, true, LimitTokensPerMonth)
	if e.RetryAfter != time.Hour {
		t.Errorf("RetryAfter = %v, want 1h", e.RetryAfter)
	}
	c.Advance(time.Hour)
	settle(t, admit(t, l, "k", lim, 500, 0, true), 500, 0)
	if got := dbUsage(t, db, "k", "month", "2026-12"); got != 500 {
		t.Errorf("2026-12 usage = %d, want 500", got)
	}
}

func TestSettleAfterMidnightChargesAdmissionDay(t *testing.T) {
	c := newClock("2026-11-22T23:59:59Z")
	l, db := newLimiter(t, c)
	lim := Limits{TokensPerDay: 1000}
	r := admit(t, l, "k", lim, 100, 900, true)
	c.Advance(2 * time.Second)
	// The new day's budget is whole although the old request is in flight.
	n := admit(t, l, "k", lim, 100, 900, true)
	settle(t, r, 100, 200)
	settle(t, n, 100, 100)
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 300 {
		t.Errorf("2026-11-22 usage = %d, want 300", got)
	}
	if got := dbUsage(t, db, "k", "day", "2026-11-23"); got != 200 {
		t.Errorf("2026-11-23 usage = %d, want 200", got)
	}
	r2 := admit(t, l, "k", lim, 100, 1024, false)
	if r2.OutputCap() != 700 {
		t.Errorf("cap = %d, want 700 (1000 - 200 used - 100 prompt)", r2.OutputCap())
	}
}

func TestUsageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := newClock(start)
	lim := Limits{TokensPerDay: 1000, TokensPerMonth: 5000}

	db := storetest.OpenDir(t, dir)
	l := New(db, Config{Now: c.Now})
	settle(t, admit(t, l, "k", lim, 100, 500, true), 100, 500)
	// Settled with a context that ends at once: Close still writes it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := admit(t, l, "k", lim, 50, 0, true)
	if err := r.Settle(ctx, 50, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = storetest.OpenDir(t, dir)
	defer db.Close()
	l = New(db, Config{Now: c.Now})
	defer l.Close(context.Background())
	refused(t, l, "k", lim, 100, 300, true, LimitTokensPerDay)
	r = admit(t, l, "k", lim, 100, 1024, false)
	if r.OutputCap() != 250 || !r.Lowered() {
		t.Errorf("after restart cap = %d lowered %v, want 250 lowered (650 of 1000 used)", r.OutputCap(), r.Lowered())
	}
	// The month was loaded too.
	c.Advance(24 * time.Hour)
	l2 := New(db, Config{Now: c.Now})
	defer l2.Close(context.Background())
	if r := admit(t, l2, "k", Limits{TokensPerMonth: 1000}, 0, 1024, false); r.OutputCap() != 350 {
		t.Errorf("next day a fresh limiter's cap = %d, want 350 (650 of the month used)", r.OutputCap())
	}
}

func TestConcurrencyLimiter(t *testing.T) {
	l, _ := newLimiter(t, newClock(start))
	const limit = 4
	lim := Limits{Concurrency: limit}
	var inflight, peak, admitted, refusedN atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				r, err := l.Admit(context.Background(), "k", lim, 1, 1, true)
				var le *LimitError
				if errors.As(err, &le) {
					if le.Limit != LimitConcurrency || le.RetryAfter != time.Second {
						t.Errorf("refused with %s after %v, want concurrency after 1s", le.Limit, le.RetryAfter)
					}
					refusedN.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				admitted.Add(1)
				n := inflight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(10 * time.Microsecond)
				inflight.Add(-1)
				if (i+j)%2 == 0 {
					r.Fail(context.Background())
				} else {
					r.Settle(context.Background(), 1, 0)
				}
			}
		}()
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Errorf("peak in flight = %d, want ≤ %d", peak.Load(), limit)
	}
	if admitted.Load() == 0 || refusedN.Load() == 0 {
		t.Errorf("admitted %d, refused %d: want both", admitted.Load(), refusedN.Load())
	}
	// Every slot came back.
	for range limit {
		admit(t, l, "k", lim, 1, 1, true)
	}
	refused(t, l, "k", lim, 1, 1, true, LimitConcurrency)
}

// TestConcurrentRequestsNeverOvershootDailyBudget runs 32 requests at once,
// several times over, against a small daily budget: whatever each charges,
// the usage settled in the database stays within the budget.
func TestConcurrentRequestsNeverOvershootDailyBudget(t *testing.T) {
	l, db := newLimiter(t, newClock(start))
	const budget = 2000
	lim := Limits{TokensPerDay: budget, Concurrency: 32}
	var charged, admitted, refusedN atomic.Int64
	for round := range 5 {
		// All 32 start together and are all in flight before any settles.
		var wg, admitting sync.WaitGroup
		gate := make(chan struct{})
		admitting.Add(32)
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stated := i%3 == 0
				<-gate
				r, err := l.Admit(context.Background(), "k", lim, 30, 100, stated)
				admitting.Done()
				admitting.Wait()
				if _, ok := err.(*LimitError); ok {
					refusedN.Add(1)
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				admitted.Add(1)
				switch (i + round) % 4 {
				case 0: // cancelled: the whole reservation
					charged.Add(30 + r.OutputCap())
					err = r.Fail(context.Background())
				case 1: // ran to its cap
					charged.Add(30 + r.OutputCap())
					err = r.Settle(context.Background(), 30, r.OutputCap())
				default: // stopped early, shorter prompt than estimated
					out := r.OutputCap() / 2
					charged.Add(20 + out)
					err = r.Settle(context.Background(), 20, out)
				}
				if err != nil {
					t.Error(err)
				}
			}()
		}
		close(gate)
		wg.Wait()
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := dbUsage(t, db, "k", "day", "2026-11-22")
	if got > budget {
		t.Errorf("settled usage in the database = %d, over the budget %d", got, budget)
	}
	if got != charged.Load() {
		t.Errorf("database has %d, requests were charged %d", got, charged.Load())
	}
	if refusedN.Load() == 0 || admitted.Load() == 0 {
		t.Errorf("admitted %d, refused %d: the budget should have bound", admitted.Load(), refusedN.Load())
	}
	t.Logf("admitted %d, refused %d, settled %d of %d", admitted.Load(), refusedN.Load(), got, budget)
}

func TestHotPathQueries(t *testing.T) {
	l, db := newLimiter(t, newClock(start))
	lim := Limits{RPM: 1000, TPM: 1e6, TokensPerDay: 1e6, TokensPerMonth: 1e7, Concurrency: 4}
	before := db.Queries()
	const n = 100
	for range n {
		r := admit(t, l, "k", lim, 10, 10, true)
		l.Status("k", lim)
		settle(t, r, 10, 5)
	}
	// One load, then at most one UPSERT per settle (fewer when commits
	// are shared).
	if got := db.Queries() - before; got < 2 || got > 1+n {
		t.Errorf("%d statements for %d requests, want between 2 and %d", got, n, 1+n)
	}
	// Refused and zero-charge requests write nothing.
	before = db.Queries()
	for range n {
		admit(t, l, "k", lim, 0, 0, true).Settle(context.Background(), 0, 0)
		l.Admit(context.Background(), "k", lim, 1e7, 0, true)
	}
	if got := db.Queries() - before; got != 0 {
		t.Errorf("%d statements for requests charging nothing, want 0", got)
	}
}

func TestWriteFailureIsReported(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	l := New(db, Config{Now: newClock(start).Now})
	r := admit(t, l, "k", Limits{TokensPerDay: 100}, 10, 10, true)
	db.Close()
	if err := r.Settle(context.Background(), 10, 10); err == nil || !strings.Contains(err.Error(), "save usage") {
		t.Errorf("Settle on a closed database = %v, want a save usage error", err)
	}
	// The charge still counts in memory.
	refused(t, l, "k", Limits{TokensPerDay: 100}, 81, 0, true, LimitTokensPerDay)
	err := l.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "2 usage rows not saved") {
		t.Errorf("Close = %v, want a report of the rows not saved", err)
	}
}
