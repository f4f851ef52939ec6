package quota

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

const start = "2026-11-22T18:00:00Z"

// counted counts a request or fails the test.
func counted(t testing.TB, l *Limiter, key string, lim Limits) {
	t.Helper()
	if err := l.Count(key, lim); err != nil {
		t.Fatalf("Count: %v", err)
	}
}

// notCounted wants Count to refuse a request for requests per minute.
func notCounted(t testing.TB, l *Limiter, key string, lim Limits) *LimitError {
	t.Helper()
	err := l.Count(key, lim)
	le, ok := err.(*LimitError)
	if !ok || le.Limit != LimitRequestsPerMinute {
		t.Fatalf("Count = %v, want a requests-per-minute LimitError", err)
	}
	return le
}

func TestRequestBucketRefills(t *testing.T) {
	c := newClock(start)
	l, _ := newLimiter(t, c)
	lim := Limits{RPM: 3}
	for i := range 3 {
		counted(t, l, "k", lim)
		settle(t, admit(t, l, "k", lim, 1, 1, true), 1, 1)
		if got, want := l.Status("k", lim).RemainingRequests, int64(2-i); got != want {
			t.Errorf("after %d requests remaining = %d, want %d", i+1, got, want)
		}
	}
	// Admit does not count requests: Count did.
	settle(t, admit(t, l, "k", lim, 1, 1, true), 1, 1)
	e := notCounted(t, l, "k", lim)
	if e.RetryAfter != 20*time.Second {
		t.Errorf("RetryAfter = %v, want 20s (one request per 20 s)", e.RetryAfter)
	}
	if e.Status.LimitRequests != 3 || e.Status.RemainingRequests != 0 || e.Status.ResetRequests != time.Minute {
		t.Errorf("refusal status = %+v, want limit 3, remaining 0, reset 1m", e.Status)
	}
	c.Advance(10 * time.Second)
	if e := notCounted(t, l, "k", lim); e.RetryAfter != 10*time.Second {
		t.Errorf("after 10 s RetryAfter = %v, want 10s", e.RetryAfter)
	}
	c.Advance(10 * time.Second)
	counted(t, l, "k", lim)
	c.Advance(time.Hour)
	if s := l.Status("k", lim); s.RemainingRequests != 3 || s.ResetRequests != 0 {
		t.Errorf("after an hour status = %+v, want a full bucket", s)
	}
	// Another key has its own bucket.
	counted(t, l, "other", lim)
}

func TestTokenBucketRefillsAndRefunds(t *testing.T) {
	c := newClock(start)
	l, _ := newLimiter(t, c)
	lim := Limits{TPM: 600} // 10 tokens a second
	r := admit(t, l, "k", lim, 100, 200, true)
	if s := l.Status("k", lim); s.LimitTokens != 600 || s.RemainingTokens != 300 || s.ResetTokens != 30*time.Second {
		t.Errorf("while 300 reserved status = %+v, want limit 600, remaining 300, reset 30s", s)
	}
	c.Advance(5 * time.Second)
	if got := l.Status("k", lim).RemainingTokens; got != 350 {
		t.Errorf("5 s later remaining = %d, want 350", got)
	}
	settle(t, r, 80, 20) // charge 100, refund 200
	if got := l.Status("k", lim).RemainingTokens; got != 550 {
		t.Errorf("after refund remaining = %d, want 550", got)
	}
	c.Advance(time.Minute)
	if got := l.Status("k", lim).RemainingTokens; got != 600 {
		t.Errorf("after a minute remaining = %d, want 600 (capped at the limit)", got)
	}
	// The whole bucket, then nothing left even for an unstated cap.
	admit(t, l, "k", lim, 100, 500, true)
	e := refused(t, l, "k", lim, 10, 100, false, LimitTokensPerMinute)
	if e.RetryAfter != 1100*time.Millisecond { // 11 tokens (prompt + 1) at 10/s
		t.Errorf("RetryAfter = %v, want 1.1s", e.RetryAfter)
	}
}

func TestMaxTokensRules(t *testing.T) {
	lim := Limits{TokensPerDay: 1000}
	tests := []struct {
		name        string
		used        int64 // settled before the request
		prompt, max int64
		stated      bool
		wantLimit   string // refusal, or "" for admitted
		wantCap     int64
		wantLowered bool
	}{
		{name: "stated fits", used: 500, prompt: 100, max: 400, stated: true, wantCap: 400},
		{name: "stated too large", used: 500, prompt: 100, max: 401, stated: true, wantLimit: LimitTokensPerDay},
		{name: "stated larger than the budget", prompt: 1, max: 5000, stated: true, wantLimit: LimitTokensPerDay},
		{name: "absent fits", used: 500, prompt: 100, max: 400, wantCap: 400},
		{name: "absent lowered", used: 500, prompt: 100, max: 1024, wantCap: 400, wantLowered: true},
		{name: "absent lowered to one", used: 899, prompt: 100, max: 1024, wantCap: 1, wantLowered: true},
		{name: "absent nothing left after prompt", used: 900, prompt: 100, max: 1024, wantLimit: LimitTokensPerDay},
		{name: "prompt alone too large", prompt: 1001, max: 10, wantLimit: LimitTokensPerDay},
		{name: "no output fits", used: 900, prompt: 100, max: 0, wantCap: 0},
		{name: "no output too large", used: 901, prompt: 100, max: 0, wantLimit: LimitTokensPerDay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLimiter(t, newClock(start))
			if tt.used > 0 {
				settle(t, admit(t, l, "k", lim, tt.used, 0, true), tt.used, 0)
			}
			if tt.wantLimit != "" {
				refused(t, l, "k", lim, tt.prompt, tt.max, tt.stated, tt.wantLimit)
				return
			}
			r := admit(t, l, "k", lim, tt.prompt, tt.max, tt.stated)
			if r.OutputCap() != tt.wantCap || r.Lowered() != tt.wantLowered {
				t.Errorf("OutputCap, Lowered = %d, %v; want %d, %v", r.OutputCap(), r.Lowered(), tt.wantCap, tt.wantLowered)
			}
		})
	}
}

func TestReservationAndRefund(t *testing.T) {
	l, db := newLimiter(t, newClock(start))
	lim := Limits{TokensPerDay: 1000, TokensPerMonth: 10000}
	a := admit(t, l, "k", lim, 100, 400, true)
	b := admit(t, l, "k", lim, 100, 400, true)
	// Both reservations hold the whole day even though nothing is settled.
	refused(t, l, "k", lim, 0, 1, false, LimitTokensPerDay)
	settle(t, a, 60, 40) // charges 100, frees 400
	c := admit(t, l, "k", lim, 100, 1024, false)
	if c.OutputCap() != 300 || !c.Lowered() {
		t.Errorf("after a refund cap = %d lowered %v, want 300 lowered", c.OutputCap(), c.Lowered())
	}
	settle(t, b, 100, 400)
	settle(t, c, 50, 300)
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 100+500+350 {
		t.Errorf("day usage in db = %d, want 950", got)
	}
	if got := dbUsage(t, db, "k", "month", "2026-11"); got != 950 {
		t.Errorf("month usage in db = %d, want 950", got)
	}
}

// A real count above the reservation (text the estimate did not see) is
// charged in full, to the day and month and to the minute's tokens.
func TestChargeAboveReservationIsCharged(t *testing.T) {
	var logs strings.Builder
	db := storetest.OpenDir(t, t.TempDir())
	l := New(db, Config{Now: newClock(start).Now, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	lim := Limits{TPM: 1000, TokensPerDay: 10000}
	r := admit(t, l, "k", lim, 10, 20, true)
	settle(t, r, 3000, 100) // 3,000 prompt tokens where 10 were estimated
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 3100 {
		t.Errorf("charged %d to the day, want the real count 3100", got)
	}
	if got := dbUsage(t, db, "k", "month", "2026-11"); got != 3100 {
		t.Errorf("charged %d to the month, want 3100", got)
	}
	if got := l.Status("k", lim).RemainingTokens; got != 0 {
		t.Errorf("minute's tokens remaining = %d, want 0 (the bucket is in debt)", got)
	}
	refused(t, l, "k", lim, 1, 1, true, LimitTokensPerMinute)
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "key_id=k") || !strings.Contains(logs.String(), "reserved=30") {
		t.Errorf("the estimator's miss was not logged at debug with the key id: %q", logs.String())
	}
}

func TestFailChargesFullReservation(t *testing.T) {
	l, db := newLimiter(t, newClock(start))
	lim := Limits{TPM: 6000, TokensPerDay: 1000}
	r := admit(t, l, "k", lim, 100, 300, true)
	if err := r.Fail(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 400 {
		t.Errorf("failed request charged %d, want 400", got)
	}
	if got := l.Status("k", lim).RemainingTokens; got != 5600 {
		t.Errorf("tokens per minute remaining = %d, want 5600 (no refund)", got)
	}
	// A cancelled request context still charges.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = admit(t, l, "k", lim, 100, 500, true)
	if err := r.Fail(ctx); err != nil {
		t.Fatal(err)
	}
	refused(t, l, "k", lim, 0, 1, false, LimitTokensPerDay)
}

func TestSecondEndIsNoop(t *testing.T) {
	l, db := newLimiter(t, newClock(start))
	lim := Limits{Concurrency: 1, TPM: 1000}
	r := admit(t, l, "k", lim, 10, 90, true)
	settle(t, r, 10, 10)
	settle(t, r, 10, 90)
	if err := r.Fail(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 20 {
		t.Errorf("usage = %d, want 20 (charged once)", got)
	}
	if got := l.Status("k", lim).RemainingTokens; got != 980 {
		t.Errorf("tokens remaining = %d, want 980 (refunded once)", got)
	}
	// The slot was released once: one request admitted, the next refused.
	admit(t, l, "k", lim, 1, 1, true)
	refused(t, l, "k", lim, 1, 1, true, LimitConcurrency)
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name  string
		now   string
		lim   Limits
		fill  int64 // tokens settled first
		limit string
		want  time.Duration
	}{
		{"tokens per minute", start, Limits{TPM: 1200}, 1200, LimitTokensPerMinute, time.Second}, // 20 tokens at 20/s
		{"day", start, Limits{TokensPerDay: 100}, 100, LimitTokensPerDay, 6 * time.Hour},
		{"month", start, Limits{TokensPerMonth: 100}, 100, LimitTokensPerMonth, 8*24*time.Hour + 6*time.Hour},
		{"month in december", "2026-12-31T23:00:00Z", Limits{TokensPerMonth: 100}, 100, LimitTokensPerMonth, time.Hour},
		{"concurrency", start, Limits{Concurrency: 1}, 0, LimitConcurrency, time.Second},
		// Several limits hit: the one that frees up last.
		{"day beats minute", start, Limits{TPM: 100, TokensPerDay: 100}, 100, LimitTokensPerDay, 6 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLimiter(t, newClock(tt.now))
			if tt.fill > 0 {
				settle(t, admit(t, l, "k", tt.lim, tt.fill, 0, true), tt.fill, 0)
			}
			// Hold what the limits allow without settling.
			for tt.lim.Concurrency > 0 {
				if _, err := l.Admit(context.Background(), "k", tt.lim, 0, 0, true); err != nil {
					break
				}
			}
			e := refused(t, l, "k", tt.lim, 10, 10, true, tt.limit)
			if e.RetryAfter != tt.want {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.want)
			}
		})
	}
}

func TestLimitErrorMessages(t *testing.T) {
	l, _ := newLimiter(t, newClock(start))
	e := refused(t, l, "secretish-key-id", Limits{TokensPerDay: 100}, 50, 500, true, LimitTokensPerDay)
	msg := e.Error()
	for _, want := range []string{"tokens per day", "550", "100", "max_tokens"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "secretish") {
		t.Errorf("message %q names the key", msg)
	}
	counted(t, l, "k", Limits{RPM: 1})
	e = notCounted(t, l, "k", Limits{RPM: 1})
	if got, want := e.Error(), "rate limit reached for requests per minute (limit 1); please try again in 1m0s"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestStatus(t *testing.T) {
	l, _ := newLimiter(t, newClock(start))
	if s := l.Status("unseen", Limits{RPM: 10, TPM: 100}); s != (Status{LimitRequests: 10, RemainingRequests: 10, LimitTokens: 100, RemainingTokens: 100}) {
		t.Errorf("unseen key status = %+v, want full buckets", s)
	}
	admit(t, l, "k", Limits{TokensPerDay: 5}, 1, 1, true)
	if s := l.Status("k", Limits{TokensPerDay: 5}); s != (Status{}) {
		t.Errorf("unlimited rpm/tpm status = %+v, want zero limits", s)
	}
}
