package quota

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// admitUser admits for user or fails the test.
func admitUser(t testing.TB, l *Limiter, user string, lim, ulim Limits, prompt, maxTokens int64, stated bool) *Reservation {
	t.Helper()
	r, err := l.AdmitUser(context.Background(), "k", lim, user, ulim, prompt, maxTokens, stated)
	if err != nil {
		t.Fatalf("AdmitUser(%s, %d, %d): %v", user, prompt, maxTokens, err)
	}
	return r
}

func userRefused(t testing.TB, l *Limiter, user string, lim, ulim Limits, prompt, maxTokens int64, limit string, byUser bool) {
	t.Helper()
	r, err := l.AdmitUser(context.Background(), "k", lim, user, ulim, prompt, maxTokens, true)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != limit || le.User != byUser {
		t.Fatalf("AdmitUser(%s) = %v, %v; want %s refused (user %v)", user, r, err, limit, byUser)
	}
	if byUser && !strings.Contains(le.Error(), "end user") {
		t.Errorf("user refusal %q does not say it is the end user's", le.Error())
	}
}

func dbUserUsage(t testing.TB, l *Limiter, user, period, bucket string) int64 {
	t.Helper()
	var n int64
	err := l.db.QueryRow(`SELECT COALESCE(SUM(tokens), 0) FROM user_usage
		WHERE key_id = 'k' AND user_id = ? AND period = ? AND bucket = ?`, user, period, bucket).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUserDailyBudgetLeavesOthers(t *testing.T) {
	c := newClock("2026-11-22T10:00:00Z")
	l, db := newLimiter(t, c)
	key := Limits{TokensPerDay: 1000}
	user := Limits{TokensPerDay: 300}
	settle(t, admitUser(t, l, "alice", key, user, 100, 200, true), 100, 200)
	userRefused(t, l, "alice", key, user, 10, 10, LimitTokensPerDay, true)
	settle(t, admitUser(t, l, "bob", key, user, 100, 100, true), 50, 50)
	// The key's total counts both users.
	if got := dbUsage(t, db, "k", "day", "2026-11-22"); got != 400 {
		t.Errorf("key day usage = %d, want 400", got)
	}
	if got := dbUserUsage(t, l, "alice", "day", "2026-11-22"); got != 300 {
		t.Errorf("alice day usage = %d, want 300", got)
	}
	if got := dbUserUsage(t, l, "bob", "month", "2026-11"); got != 100 {
		t.Errorf("bob month usage = %d, want 100", got)
	}
	// The next day alice has a whole budget again.
	c.Advance(14 * time.Hour)
	settle(t, admitUser(t, l, "alice", key, user, 100, 200, true), 1, 1)
}

func TestKeyLimitBoundsUsers(t *testing.T) {
	c := newClock("2026-11-22T10:00:00Z")
	l, _ := newLimiter(t, c)
	key := Limits{TokensPerDay: 500, Concurrency: 2}
	user := Limits{TokensPerDay: 400}
	a := admitUser(t, l, "alice", key, user, 100, 300, true)
	// bob's own budget has room, the key's has 100 left: refused by the key.
	userRefused(t, l, "bob", key, user, 100, 100, LimitTokensPerDay, false)
	// The refusal by the key left nothing held in bob's buckets.
	us, err := l.UserUsage(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.User == "bob" && (u.InFlight != 0 || u.ReservedTokens != 0) {
			t.Fatalf("bob after a key refusal = %+v, want nothing held", u)
		}
	}
	// An unstated cap is lowered to what the tighter budget leaves.
	r, err := l.AdmitUser(t.Context(), "k", key, "bob", user, 50, 400, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.OutputCap() != 50 || !r.Lowered() {
		t.Fatalf("bob's cap = %d (lowered %v), want 50 lowered by the key's budget", r.OutputCap(), r.Lowered())
	}
	// Per-user concurrency: the key allows 2, the user 1.
	c1 := Limits{Concurrency: 1}
	settle(t, a, 1, 1)
	settle(t, r, 1, 1)
	h := admitUser(t, l, "carol", Limits{}, c1, 1, 1, true)
	userRefused(t, l, "carol", Limits{}, c1, 1, 1, LimitConcurrency, true)
	admitUser(t, l, "dave", Limits{}, c1, 1, 1, true).Fail(t.Context())
	settle(t, h, 1, 1)
}

func TestUserCapLoweredThenShrunk(t *testing.T) {
	c := newClock("2026-11-22T10:00:00Z")
	l, _ := newLimiter(t, c)
	key := Limits{TPM: 200}
	user := Limits{TPM: 300}
	r, err := l.AdmitUser(t.Context(), "k", key, "alice", user, 100, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.OutputCap() != 100 {
		t.Fatalf("cap = %d, want 100 (the key's 200 TPM less the prompt)", r.OutputCap())
	}
	// alice's bucket gave back what the key's lower cap does not need:
	// she holds 200 of 300.
	if st := l.stateOf(subject{"k", "alice"}); st.tpm.available() != 100 {
		t.Fatalf("alice's TPM left = %d, want 100", st.tpm.available())
	}
	settle(t, r, 100, 100)
}

func TestUserRPM(t *testing.T) {
	c := newClock("2026-11-22T10:00:00Z")
	l, _ := newLimiter(t, c)
	u := Limits{RPM: 2}
	for range 2 {
		if err := l.CountUser("k", "alice", u); err != nil {
			t.Fatal(err)
		}
	}
	var le *LimitError
	if err := l.CountUser("k", "alice", u); !errors.As(err, &le) || le.Limit != LimitRequestsPerMinute || !le.User {
		t.Fatalf("third request of alice = %v, want the user's RPM refusal", err)
	}
	if err := l.CountUser("k", "bob", u); err != nil {
		t.Fatalf("bob refused with alice's RPM spent: %v", err)
	}
}

// TestUserUsageSurvivesRestart: usage per (key, user) is in the database,
// so a new Limiter on a reopened database holds the user to what is left.
func TestUserUsageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := newClock("2026-11-22T10:00:00Z")
	key, user := Limits{}, Limits{TokensPerDay: 300, TokensPerMonth: 1000}

	db := storetest.OpenDir(t, dir)
	l := New(db, Config{Now: c.Now})
	r, err := l.AdmitUser(t.Context(), "k", key, "alice", user, 100, 200, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(t.Context(), 100, 150); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = storetest.OpenDir(t, dir)
	l = New(db, Config{Now: c.Now})
	t.Cleanup(func() { l.Close(context.Background()); db.Close() })
	userRefused(t, l, "alice", key, user, 40, 20, LimitTokensPerDay, true) // 250 used: 60 > 50 left
	settle(t, admitUser(t, l, "alice", key, user, 25, 25, true), 25, 25)
	us, err := l.UserUsage(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].User != "alice" || us[0].TokensToday != 300 || us[0].TokensThisMonth != 300 || us[0].LastSeen == nil {
		t.Fatalf("users = %+v, want alice with 300 today and this month, last seen set", us)
	}
	stored, err := ReadUserUsage(t.Context(), db, "k", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].TokensToday != 300 {
		t.Fatalf("stored users = %+v, want alice with 300", stored)
	}
	// A user id that looks like SQL is only a parameter.
	evil := "x'); DROP TABLE user_usage; --"
	settle(t, admitUser(t, l, evil, key, user, 1, 1, true), 1, 1)
	if _, err := ReadUserUsage(t.Context(), db, "k", c.Now()); err != nil {
		t.Fatalf("after an SQL-like user id: %v", err)
	}
}

// TestIdleUsersSwept: past the bound on end users' states, those idle for
// a while are dropped; one with a request in flight is kept, and a dropped
// user's day usage comes back from the database.
func TestIdleUsersSwept(t *testing.T) {
	c := newClock("2026-11-22T10:00:00Z")
	l, _ := newLimiter(t, c)
	l.sweepAt = 2
	ulim := Limits{TokensPerDay: 100}
	settle(t, admitUser(t, l, "idle", Limits{}, ulim, 30, 0, true), 30, 0)
	busy := admitUser(t, l, "busy", Limits{}, ulim, 10, 0, true)
	c.Advance(userIdle + time.Second)
	admitUser(t, l, "new", Limits{}, ulim, 1, 0, true).Fail(t.Context()) // the third user's state sweeps
	l.mu.RLock()
	_, idleKept := l.keys[subject{"k", "idle"}]
	_, busyKept := l.keys[subject{"k", "busy"}]
	n := l.users
	l.mu.RUnlock()
	if idleKept || !busyKept || n != 2 {
		t.Fatalf("after a sweep: idle kept %v, busy kept %v, %d user states; want idle dropped, busy kept, 2", idleKept, busyKept, n)
	}
	settle(t, busy, 10, 0)
	// idle's 30 tokens are read back: 70 left, so 71 is refused.
	userRefused(t, l, "idle", Limits{}, ulim, 71, 0, LimitTokensPerDay, true)
	settle(t, admitUser(t, l, "idle", Limits{}, ulim, 70, 0, true), 70, 0)
}
