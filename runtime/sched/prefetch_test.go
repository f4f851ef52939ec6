package sched

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// TestPrefetchBound: with Prefetch k a model never has more than slots+k
// requests in flight, under concurrent load with cancellations.
func TestPrefetchBound(t *testing.T) {
	slots := map[string]int{"chat": 3, "embed": 1}
	const prefetch = 2
	s := New(Config{
		Slots:          func(m string) int { return slots[m] },
		Prefetch:       prefetch,
		MaxQueue:       -1,
		MaxQueuePerKey: -1,
	})
	b := &countingBackend{now: map[string]int{}, maxSeen: map[string]int{}}
	models := []string{"chat", "embed"}
	keys := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for range 40 {
				model := models[rng.IntN(len(models))]
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(5) == 0 {
					go cancel()
				}
				release, _, err := s.AcquireUser(ctx, model, keys[rng.IntN(len(keys))], []string{"", "u1", "u2"}[rng.IntN(3)], rng.Int64N(4000))
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("Acquire: %v", err)
					}
					continue
				}
				b.call(model)
				release()
			}
		})
	}
	wg.Wait()
	for m, n := range slots {
		if b.maxSeen[m] > n+prefetch {
			t.Errorf("model %s: %d requests in flight, want at most slots+prefetch = %d", m, b.maxSeen[m], n+prefetch)
		}
	}
	if st := s.Stats(); len(st.Models) != 0 || len(st.Keys) != 0 {
		t.Errorf("Stats after all released = %+v, want empty", st)
	}
}

// TestPrefetchFillsToBound: a key alone takes slots+k at once, and not
// one more; the next waits for a release.
func TestPrefetchFillsToBound(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 2 }, Prefetch: 1})
	ctx, cancel := context.WithCancel(context.Background())
	held := []func(){h.hold("m", "a"), h.hold("m", "a"), h.hold("m", "a")}
	if st := h.s.Stats().Models["m"]; st.InFlight != 3 || st.Slots != 2 {
		t.Fatalf("stats %+v, want 3 in flight on 2 slots", st)
	}
	r := h.submit(ctx, "m", "a", 1)
	h.none()
	if got := h.dispatch(held[0]); got != r {
		t.Fatalf("dispatched #%d, want the waiting request", got.n)
	}
	h.drain(cancel, held[1], held[2], r.release)
}

// TestPrefetchKeepsFairOrder: the dispatches beyond the slots are made in
// the scheduler's fair order, per key and, inside a delegate key, per end
// user; while other keys wait, a key holds at most slots−1 (at least 1),
// prefetched requests included.
func TestPrefetchKeepsFairOrder(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 1 }, Prefetch: 1, Quantum: 10})
	ctx, cancel := context.WithCancel(context.Background())
	// x alone fills the slot and the prefetch.
	cur := []func(){h.hold("m", "x"), h.hold("m", "x")}
	names := map[*req]string{}
	user := func(key, u string) {
		r := h.submitWith("m", key, func(r *req) {
			r.release, r.waited, r.err = h.s.AcquireUser(ctx, "m", key, u, 10)
		})
		names[r] = key + "/" + u
	}
	user("d", "u1")
	user("d", "u1")
	user("d", "u1")
	user("d", "u2")
	user("e", "")
	user("e", "")
	var got []string
	for len(got) < 6 {
		r := h.dispatch(cur[0])
		cur = append(cur[1:], r.release)
		got = append(got, names[r])
		if st := h.s.Stats(); st.Models["m"].InFlight > 2 {
			t.Fatalf("%d in flight, want at most slots+prefetch = 2", st.Models["m"].InFlight)
		}
		if st := h.s.Stats(); st.Models["m"].Queued > 0 && (st.Keys["d"].InFlight > 1 || st.Keys["e"].InFlight > 1) {
			t.Fatalf("a key holds more than one while others wait: %+v", st.Keys)
		}
	}
	if want := "d/u1 e/ d/u2 e/ d/u1 d/u1"; strings.Join(got, " ") != want {
		t.Errorf("dispatch order %s, want %s", strings.Join(got, " "), want)
	}
	h.drain(cancel, cur...)
}
