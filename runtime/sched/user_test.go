package sched

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUserRoundOrder: a delegate key's turns go round its end users, one
// request each, the key itself ("") being one of them; a user that starts
// waiting joins at the end of the round.
func TestUserRoundOrder(t *testing.T) {
	m := newModel("m")
	m.slots = 1
	one := func(string) int { return 1 }
	ids := map[*waiter]string{}
	for _, name := range []string{"a1", "a2", "a3", "a4", "b1", "b2", "c1"} {
		user := name[:1]
		if user == "c" {
			user = "" // the key's own request
		}
		w := &waiter{key: m.key("k", one), user: user, cost: 100, ready: make(chan struct{})}
		ids[w] = name
		m.enqueue(w)
	}
	var got []string
	for w := m.next(100); w != nil; w = m.next(100) {
		got = append(got, ids[w])
	}
	if want := "a1 b1 c1 a2 b2 a3 a4"; strings.Join(got, " ") != want {
		t.Errorf("dispatch order = %v, want %s", got, want)
	}
	if k := m.keys["k"]; k != nil && (len(k.users) != 0 || len(k.waiters) != 0) {
		t.Errorf("after dispatching all: %d users, %d waiters left", len(k.users), len(k.waiters))
	}
}

// TestUsersShareTheirKeysTurns: the users of a delegate key share its
// turns; the key's turns still alternate with another key's.
func TestUsersShareTheirKeysTurns(t *testing.T) {
	m := newModel("m")
	m.slots = 1
	one := func(string) int { return 1 }
	ids := map[*waiter]string{}
	add := func(key, user, name string) {
		w := &waiter{key: m.key(key, one), user: user, cost: 100, ready: make(chan struct{})}
		ids[w] = name
		m.enqueue(w)
	}
	for i := range 4 {
		add("k", "x", "x"+string(rune('1'+i)))
	}
	for i := range 4 {
		add("k", "y", "y"+string(rune('1'+i)))
	}
	for i := range 4 {
		add("l", "", "L"+string(rune('1'+i)))
	}
	var got []string
	for w := m.next(100); w != nil; w = m.next(100) {
		got = append(got, ids[w])
	}
	if want := "x1 L1 y1 L2 x2 L3 y2 L4 x3 y3 x4 y4"; strings.Join(got, " ") != want {
		t.Errorf("dispatch order = %v, want %s", got, want)
	}
}

// TestUserCostsFairInTokens: a user of large requests gets fewer turns,
// as in the round among keys: shares are in tokens.
func TestUserCostsFairInTokens(t *testing.T) {
	m := newModel("m")
	m.slots = 1
	one := func(string) int { return 1 }
	ids := map[*waiter]string{}
	add := func(user, name string, cost int64) {
		w := &waiter{key: m.key("k", one), user: user, cost: cost, ready: make(chan struct{})}
		ids[w] = name
		m.enqueue(w)
	}
	for i := range 3 {
		add("big", "B"+string(rune('1'+i)), 300)
	}
	for i := range 6 {
		add("small", "s"+string(rune('1'+i)), 100)
	}
	var got []string
	for w := m.next(100); w != nil; w = m.next(100) {
		got = append(got, ids[w])
	}
	// small is served one request a turn while big saves up for 300.
	if want := "s1 s2 B1 s3 s4 s5 B2 s6 B3"; strings.Join(got, " ") != want {
		t.Errorf("dispatch order = %v, want %s", got, want)
	}
}

// TestAcquireUserHeavyUserDoesNotStarve drives the public AcquireUser: a
// user with many waiting requests and a light user of the same key, one
// slot; the light user's request is dispatched within two grants.
func TestAcquireUserHeavyUserDoesNotStarve(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 1 }, MaxQueue: -1, MaxQueuePerKey: -1})
	ctx, cancel := context.WithCancel(context.Background())
	cur := h.hold("m", "k")
	for range 10 {
		h.submitUser(ctx, "m", "k", "heavy", 2000)
	}
	light := h.submitUser(ctx, "m", "k", "light", 2000)
	for i := 1; ; i++ {
		r := h.dispatch(cur)
		cur = r.release
		if r == light {
			break
		}
		if i >= 2 {
			t.Fatalf("light user not dispatched within %d grants", i)
		}
	}
	h.drain(cancel, cur)
}

// submitUser is submit for an end user of key.
func (h *harness) submitUser(ctx context.Context, model, key, user string, cost int64) *req {
	h.t.Helper()
	return h.submitWith(model, key, func(r *req) {
		r.release, r.waited, r.err = h.s.AcquireUser(ctx, model, key, user, cost)
	})
}

// TestUserQueueBound: an end user may have at most half its key's queue
// bound waiting, so the key's other users still find room; a request
// without a user is bound by the key's limit only.
func TestUserQueueBound(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 1 }, MaxQueue: -1, MaxQueuePerKey: 4})
	ctx, cancel := context.WithCancel(context.Background())
	cur := h.hold("m", "k")
	for range 2 {
		h.submitUser(ctx, "m", "k", "heavy", 10)
	}
	_, _, err := h.s.AcquireUser(ctx, "m", "k", "heavy", 10)
	var qe *QueueError
	if !errors.As(err, &qe) || !errors.Is(err, ErrUserQueueFull) || qe.RetryAfter < time.Second {
		t.Fatalf("heavy's third waiter: %v, want ErrUserQueueFull with a Retry-After", err)
	}
	h.submitUser(ctx, "m", "k", "light", 10)
	h.submit(ctx, "m", "k", 10)
	if _, _, err := h.s.AcquireUser(ctx, "m", "k", "other", 10); !errors.Is(err, ErrKeyQueueFull) {
		t.Fatalf("a fifth waiter of the key: %v, want ErrKeyQueueFull", err)
	}
	h.drain(cancel, cur)
}
