package sched

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// gate is a Config.Gate a test opens and closes per model.
type gate struct {
	closed atomic.Pointer[map[string]bool]
}

func (g *gate) set(closed map[string]bool) { g.closed.Store(&closed) }

func (g *gate) open(model string) bool {
	c := g.closed.Load()
	return c == nil || !(*c)[model]
}

// TestGatePausesAndResumes: while the gate is closed nothing is dispatched,
// not even into free slots, and requests keep queueing; after it opens,
// Kick dispatches them in fair order.
func TestGatePausesAndResumes(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	g := &gate{}
	h := newHarness(t, Config{
		Slots: func(string) int { return 2 },
		Gate:  g.open,
		Now:   clock.Now,
		After: clock.After,
	})
	ctx, cancel := context.WithCancel(context.Background())

	g.set(map[string]bool{"m": true})
	a1 := h.submit(ctx, "m", "a", 1) // both slots are free, yet it waits
	a2 := h.submit(ctx, "m", "a", 1)
	b1 := h.submit(ctx, "m", "b", 1)
	other := h.hold("other", "a") // another model's gate is open
	h.none()
	h.s.Kick() // a kick with the gate still closed changes nothing
	h.none()
	if st := h.s.Stats().Models["m"]; st.InFlight != 0 || st.Queued != 3 {
		t.Fatalf("while held: %+v, want 0 in flight, 3 queued", st)
	}

	clock.Advance(time.Minute) // time passing does not open it either
	h.none()

	g.set(nil)
	h.none() // nothing moves until someone kicks
	h.s.Kick()
	first, second := h.next(), h.next()
	// One Kick dispatches both, so the order their goroutines report in is
	// not the dispatch order: compare as a set. a holds nothing yet and is
	// first in the round; with b waiting, a may take only slots−1 = 1 slot,
	// so b gets the other and a2 waits.
	if first.n > second.n {
		first, second = second, first
	}
	if first != a1 || second != b1 {
		t.Fatalf("dispatched %s#%d then %s#%d; want a#%d then b#%d", first.key, first.n, second.key, second.n, a1.n, b1.n)
	}
	h.none()
	if first.waited != time.Minute {
		t.Errorf("waited %v, want the minute the gate was closed", first.waited)
	}

	// Closing again holds a2 even when a slot frees.
	g.set(map[string]bool{"m": true})
	first.release()
	h.none()
	g.set(nil)
	h.s.Kick()
	if r := h.next(); r != a2 {
		t.Fatalf("dispatched %s#%d, want a#%d", r.key, r.n, a2.n)
	}
	h.drain(cancel, second.release, a2.release, other)
}

// TestGateTimeout: the queue timeout still applies while the gate is
// closed, and says so with its own reason and Retry-After.
func TestGateTimeout(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	g := &gate{}
	g.set(map[string]bool{"m": true})
	h := newHarness(t, Config{
		Slots:          func(string) int { return 4 },
		Gate:           g.open,
		QueueTimeout:   30 * time.Second,
		GateRetryAfter: 7 * time.Second,
		Now:            clock.Now,
		After:          clock.After,
	})
	r := h.submit(context.Background(), "m", "a", 1)
	waitArmed(clock, 1)
	clock.Advance(30 * time.Second)
	<-r.done
	var qe *QueueError
	if !errors.Is(r.err, ErrGateClosed) || !errors.As(r.err, &qe) || qe.RetryAfter != 7*time.Second {
		t.Fatalf("Acquire = %v (%+v), want ErrGateClosed with Retry-After 7s", r.err, qe)
	}
	if r.waited != 30*time.Second {
		t.Errorf("waited %v, want 30s", r.waited)
	}
	h.assertEmpty()
}

// TestGateCancel: a caller cancelled while held leaves the queue at once.
func TestGateCancel(t *testing.T) {
	g := &gate{}
	g.set(map[string]bool{"m": true})
	h := newHarness(t, Config{Slots: func(string) int { return 1 }, Gate: g.open})
	ctx, cancel := context.WithCancel(context.Background())
	r := h.submit(ctx, "m", "a", 1)
	cancel()
	<-r.done
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", r.err)
	}
	h.assertEmpty()
}
