package sched

import (
	"context"
	"strings"
	"testing"
)

// TestRoundOrder drives one model's queue directly: keys take turns, a key
// that starts waiting joins at the end of the round, FIFO within a key.
func TestRoundOrder(t *testing.T) {
	m := newModel("m")
	m.slots = 1
	one := func(string) int { return 1 }
	ids := map[*waiter]string{}
	for _, name := range []string{"a1", "a2", "b1", "c1", "b2", "c2", "a3"} {
		w := &waiter{key: m.key(name[:1], one), cost: 100, ready: make(chan struct{})}
		ids[w] = name
		m.enqueue(w)
	}
	var got []string
	for w := m.next(100); w != nil; w = m.next(100) {
		got = append(got, ids[w])
	}
	if want := "a1 b1 c1 a2 b2 c2 a3"; strings.Join(got, " ") != want {
		t.Errorf("dispatch order = %v, want %s", got, want)
	}
	if m.waiting != 0 || len(m.active) != 0 {
		t.Errorf("after dispatching all: waiting %d, active %d; want 0, 0", m.waiting, len(m.active))
	}
}

// dispatch releases the slot held by cur and returns the next granted
// request, with one slot: dispatch order is the scheduler's choice alone.
func (h *harness) dispatch(cur func()) *req {
	h.t.Helper()
	cur()
	return h.next()
}

func TestLightKeyDispatchedSoon(t *testing.T) {
	const quantum, cost = 1000, 250 // heavy gets 4 requests per round
	h := newHarness(t, Config{
		Slots:          func(string) int { return 1 },
		Quantum:        quantum,
		MaxQueue:       -1,
		MaxQueuePerKey: -1,
	})
	ctx, cancel := context.WithCancel(context.Background())
	cur := h.hold("m", "heavy")
	for range 50 {
		h.submit(ctx, "m", "heavy", cost)
	}
	for range 2 { // heavy is part way through its round
		cur = h.dispatch(cur).release
	}
	light := h.submit(ctx, "m", "light", cost)
	const bound = quantum/cost + 1
	for i := 1; ; i++ {
		r := h.dispatch(cur)
		cur = r.release
		if r == light {
			t.Logf("light dispatched after %d dispatches", i)
			break
		}
		if i >= bound {
			t.Fatalf("light not dispatched within %d dispatches", bound)
		}
	}
	h.drain(cancel, cur)
}

func TestWeightedShares(t *testing.T) {
	const n = 300 // dispatches counted
	tests := []struct {
		name    string
		weights map[string]int
		costs   map[string]int64
		want    map[string]float64 // share of dispatches
	}{
		{"equal", map[string]int{"a": 1, "b": 1}, map[string]int64{"a": 100, "b": 100},
			map[string]float64{"a": 0.5, "b": 0.5}},
		{"weight 2 to 1", map[string]int{"a": 2, "b": 1}, map[string]int64{"a": 100, "b": 100},
			map[string]float64{"a": 2.0 / 3, "b": 1.0 / 3}},
		{"weights 3:2:1", map[string]int{"a": 3, "b": 2, "c": 1}, map[string]int64{"a": 100, "b": 100, "c": 100},
			map[string]float64{"a": 0.5, "b": 1.0 / 3, "c": 1.0 / 6}},
		{"costs share tokens, not requests", map[string]int{"a": 1, "b": 1}, map[string]int64{"a": 100, "b": 300},
			map[string]float64{"a": 0.75, "b": 0.25}},
		{"weight against cost", map[string]int{"a": 1, "b": 3}, map[string]int64{"a": 100, "b": 300},
			map[string]float64{"a": 0.5, "b": 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{
				Slots:          func(string) int { return 1 },
				Weight:         func(k string) int { return tt.weights[k] },
				Quantum:        300,
				MaxQueue:       -1,
				MaxQueuePerKey: -1,
			})
			ctx, cancel := context.WithCancel(context.Background())
			cur := h.hold("m", "holder")
			for range n {
				for _, k := range []string{"a", "b", "c"} {
					if c, ok := tt.costs[k]; ok {
						h.submit(ctx, "m", k, c)
					}
				}
			}
			counts := map[string]int{}
			last := map[string]int{}
			for range n {
				r := h.dispatch(cur)
				cur = r.release
				counts[r.key]++
				if r.n < last[r.key] {
					t.Fatalf("key %s: request %d dispatched after %d; want FIFO", r.key, r.n, last[r.key])
				}
				last[r.key] = r.n
			}
			for k, share := range tt.want {
				want := share * n
				if got := float64(counts[k]); got < want-3 || got > want+3 {
					t.Errorf("key %s: %v of %d dispatches, want %.0f±3", k, got, n, want)
				}
			}
			h.drain(cancel, cur)
		})
	}
}

func TestNoStarvation(t *testing.T) {
	const quantum = 1000
	h := newHarness(t, Config{
		Slots:          func(string) int { return 1 },
		Quantum:        quantum,
		MaxQueue:       -1,
		MaxQueuePerKey: -1,
	})
	ctx, cancel := context.WithCancel(context.Background())
	cur := h.hold("m", "holder")
	small := []string{"a", "b", "c"}
	for range 60 {
		for _, k := range small {
			h.submit(ctx, "m", k, quantum/2)
		}
	}
	big := h.submit(ctx, "m", "big", 20*quantum)
	// 20 rounds of 2 requests from each small key, then big.
	const bound = 20*2*3 + 3
	for i := 1; ; i++ {
		r := h.dispatch(cur)
		cur = r.release
		if r == big {
			t.Logf("big request dispatched after %d dispatches", i)
			break
		}
		if i >= bound {
			t.Fatalf("big request not dispatched within %d dispatches", bound)
		}
	}
	h.drain(cancel, cur)
}

// TestHugeCosts needs millions of rounds before anyone can pay: they are
// skipped, not run, and the key needing the fewest goes first.
func TestHugeCosts(t *testing.T) {
	h := newHarness(t, Config{
		Slots:   func(string) int { return 1 },
		Quantum: 1,
		Weight:  func(k string) int { return map[string]int{"a": 4, "b": 1, "c": 1}[k] },
	})
	cur := h.hold("m", "holder")
	c := h.submit(context.Background(), "m", "c", 6e14)
	b := h.submit(context.Background(), "m", "b", 5e14)
	a := h.submit(context.Background(), "m", "a", 1e15) // 2.5e14 rounds at weight 4
	for _, want := range []*req{a, b, c} {
		r := h.dispatch(cur)
		if r != want {
			t.Fatalf("dispatched %s, want %s", r.key, want.key)
		}
		cur = r.release
	}
	cur()
	h.assertEmpty()
}
