package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// countingBackend records the most calls it ever saw at once per model.
type countingBackend struct {
	mu      sync.Mutex
	now     map[string]int
	maxSeen map[string]int
}

func (b *countingBackend) call(model string) {
	b.mu.Lock()
	b.now[model]++
	b.maxSeen[model] = max(b.maxSeen[model], b.now[model])
	b.mu.Unlock()
	runtime.Gosched()
	b.mu.Lock()
	b.now[model]--
	b.mu.Unlock()
}

func TestSlotsNeverExceeded(t *testing.T) {
	slots := map[string]int{"chat": 3, "embed": 1, "big": 8}
	s := New(Config{
		Slots:          func(m string) int { return slots[m] },
		MaxQueue:       -1,
		MaxQueuePerKey: -1,
		Weight:         func(k string) int { return len(k) },
	})
	b := &countingBackend{now: map[string]int{}, maxSeen: map[string]int{}}
	models := []string{"chat", "embed", "big"}
	keys := []string{"a", "bb", "ccc", "d", "e"}
	var wg sync.WaitGroup
	var served, cancelled atomic.Int64
	for g := range 48 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 40 {
				model := models[rng.IntN(len(models))]
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(5) == 0 { // some callers give up while queued
					go cancel()
				}
				release, _, err := s.Acquire(ctx, model, keys[rng.IntN(len(keys))], rng.Int64N(4000))
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("Acquire: %v", err)
					}
					cancelled.Add(1)
					continue
				}
				b.call(model)
				served.Add(1)
				release()
			}
		})
	}
	wg.Wait()
	for m, n := range slots {
		if b.maxSeen[m] > n {
			t.Errorf("model %s: %d concurrent backend calls, slots %d", m, b.maxSeen[m], n)
		}
	}
	if st := s.Stats(); len(st.Models) != 0 || len(st.Keys) != 0 {
		t.Errorf("Stats after all released = %+v, want empty", st)
	}
	t.Logf("served %d, cancelled %d, max concurrency %v", served.Load(), cancelled.Load(), b.maxSeen)
}

func TestSlotsMinusOneRule(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 4 }})
	ctx, cancel := context.WithCancel(context.Background())
	// heavy takes every slot while nobody else waits.
	var heavy []func()
	for range 4 {
		heavy = append(heavy, h.hold("m", "heavy"))
	}
	for range 5 {
		h.submit(ctx, "m", "heavy", 10)
	}
	light := h.submit(ctx, "m", "light", 10)
	h.none()

	// heavy is first in the round and has the deficit, but it already
	// holds slots−1 while light waits: the slot goes to light.
	heavy[0]()
	if r := h.next(); r != light {
		t.Fatalf("after a heavy release, dispatched %s #%d; want light", r.key, r.n)
	}
	h.none()
	// nobody else waits now: heavy may fill the slots again.
	heavy[1]()
	r := h.next()
	if r.key != "heavy" {
		t.Fatalf("dispatched %s; want heavy", r.key)
	}
	if got := h.s.Stats().Keys["heavy"].InFlight; got != 3 {
		t.Errorf("heavy in flight = %d, want 3", got)
	}
	h.drain(cancel, heavy[2], heavy[3], light.release, r.release)
}

func TestSlotsMinusOneRuleSingleSlot(t *testing.T) {
	// With one slot the rule cannot leave the slot idle.
	h := newHarness(t, Config{Slots: func(string) int { return 1 }})
	ctx, cancel := context.WithCancel(context.Background())
	release := h.hold("m", "a")
	h.submit(ctx, "m", "a", 10)
	h.submit(ctx, "m", "b", 10)
	release()
	first := h.next()
	first.release()
	second := h.next()
	if first.key == second.key {
		t.Errorf("dispatched %s twice; want both keys", first.key)
	}
	h.drain(cancel, second.release)
}

func TestQueueBounds(t *testing.T) {
	h := newHarness(t, Config{
		Slots:          func(string) int { return 1 },
		MaxQueue:       3,
		MaxQueuePerKey: 2,
	})
	ctx, cancel := context.WithCancel(context.Background())
	release, other := h.hold("m", "holder"), h.hold("other", "holder")
	h.submit(ctx, "m", "a", 1)
	h.submit(ctx, "other", "a", 1) // the key bound spans models
	h.submit(ctx, "m", "b", 1)

	tests := []struct {
		name   string
		model  string
		key    string
		want   error
		reason string
	}{
		{"key over its bound", "m", "a", ErrKeyQueueFull, ReasonKeyQueueFull},
		{"global bound", "m", "c", ErrQueueFull, ReasonQueueFull},
		{"global bound on another model", "third", "c", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				// an idle model takes the request at once: the bound is on waiting.
				rel, _, err := h.s.Acquire(ctx, tt.model, tt.key, 1)
				if err != nil {
					t.Fatalf("Acquire = %v, want a free slot", err)
				}
				rel()
				return
			}
			_, _, err := h.s.Acquire(ctx, tt.model, tt.key, 1)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Acquire = %v, want %v", err, tt.want)
			}
			var qe *QueueError
			if !errors.As(err, &qe) || qe.Reason != tt.reason || qe.RetryAfter < time.Second {
				t.Errorf("error = %#v, want reason %s and RetryAfter ≥ 1s", qe, tt.reason)
			}
		})
	}
	h.drain(cancel, release, other)
}

func TestQueueTimeout(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	h := newHarness(t, Config{
		Slots:        func(string) int { return 1 },
		QueueTimeout: 30 * time.Second,
		Now:          clock.Now,
		After:        clock.After,
	})
	release := h.hold("m", "holder")
	r := h.submit(context.Background(), "m", "a", 1)
	waitArmed(clock, 1)
	clock.Advance(29 * time.Second)
	select {
	case <-r.done:
		t.Fatalf("Acquire returned before the timeout: %v", r.err)
	default:
	}
	clock.Advance(time.Second)
	<-r.done
	if !errors.Is(r.err, ErrQueueTimeout) {
		t.Fatalf("Acquire = %v, want ErrQueueTimeout", r.err)
	}
	if r.waited != 30*time.Second {
		t.Errorf("waited = %v, want 30s on the fake clock", r.waited)
	}
	if st := h.s.Stats().Models["m"]; st.Queued != 0 || st.InFlight != 1 {
		t.Errorf("model stats = %+v, want 0 queued, 1 in flight", st)
	}
	release()
	h.assertEmpty()
}

func TestWaitedOnGrant(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	h := newHarness(t, Config{Slots: func(string) int { return 1 }, Now: clock.Now, After: clock.After})
	release := h.hold("m", "holder")
	h.submit(context.Background(), "m", "a", 1)
	clock.Advance(1500 * time.Millisecond)
	release()
	r := h.next()
	if r.waited != 1500*time.Millisecond {
		t.Errorf("waited = %v, want 1.5s on the fake clock", r.waited)
	}
	r.release()
	h.assertEmpty()
}

func TestCancelWhileQueued(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 1 }})
	release := h.hold("m", "holder")
	ctx, cancel := context.WithCancel(context.Background())
	gone := h.submit(ctx, "m", "a", 1)
	stays := h.submit(context.Background(), "m", "b", 1)

	cancel()
	<-gone.done // returns at once, while the slot is still held
	if !errors.Is(gone.err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", gone.err)
	}
	if st := h.s.Stats(); st.Models["m"].Queued != 1 || st.Keys["a"] != (KeyStats{}) {
		t.Errorf("Stats = %+v, want only b queued", st)
	}
	release()
	if r := h.next(); r != stays {
		t.Fatalf("dispatched %s; want b", r.key)
	}
	stays.release()
	h.assertEmpty()
}

func TestCancelledBeforeAcquire(t *testing.T) {
	s := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Acquire(ctx, "m", "a", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
}

// TestCancelRacesDispatch cancels waiters just as slots free up: whichever
// wins, no slot may leak.
func TestCancelRacesDispatch(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 2 }})
	for i := range 300 {
		a, b := h.hold("m", "holder"), h.hold("m", "holder")
		ctx, cancel := context.WithCancel(context.Background())
		r1 := h.submit(ctx, "m", fmt.Sprint("k", i%3), 1)
		r2 := h.submit(ctx, "m", "other", 1)
		var wg sync.WaitGroup
		wg.Go(cancel)
		wg.Go(a)
		wg.Go(b)
		wg.Wait()
		for _, r := range []*req{r1, r2} {
			<-r.done
			if r.err == nil {
				<-h.granted
				r.release()
			}
		}
		h.assertEmpty()
	}
}

func TestReleaseTwice(t *testing.T) {
	h := newHarness(t, Config{Slots: func(string) int { return 1 }})
	release := h.hold("m", "a")
	r := h.submit(context.Background(), "m", "b", 1)
	release()
	h.next()
	release() // must not free b's slot
	if st := h.s.Stats().Models["m"]; st.InFlight != 1 {
		t.Errorf("in flight = %d, want 1", st.InFlight)
	}
	r.release()
	r.release()
	h.assertEmpty()
}

func TestStats(t *testing.T) {
	h := newHarness(t, Config{Slots: func(m string) int { return len(m) }})
	ctx, cancel := context.WithCancel(context.Background())
	r1, r2 := h.hold("mm", "a"), h.hold("mm", "b")
	h.submit(ctx, "mm", "a", 1)
	r3 := h.hold("m", "a")
	want := Stats{
		Models: map[string]ModelStats{"mm": {Slots: 2, InFlight: 2, Queued: 1}, "m": {Slots: 1, InFlight: 1}},
		Keys:   map[string]KeyStats{"a": {InFlight: 2, Queued: 1}, "b": {InFlight: 1}},
	}
	got := h.s.Stats()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	h.drain(cancel, r1, r2, r3)
}

func TestAcquireTick(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	s := New(Config{
		Slots:        func(string) int { return 1 },
		QueueTimeout: time.Minute,
		Now:          clock.Now,
		After:        clock.After,
	})
	release, _, err := s.AcquireTick(context.Background(), "m", "holder", 1, time.Second, func() {
		t.Error("tick on a request that did not wait")
	})
	if err != nil {
		t.Fatal(err)
	}
	ticked := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		rel, _, err := s.AcquireTick(context.Background(), "m", "a", 1, 5*time.Second, func() { ticked <- struct{}{} })
		if err == nil {
			rel()
		}
		done <- err
	}()
	for i := range 3 {
		waitArmed(clock, 2) // the queue timeout and the next tick
		clock.Advance(5 * time.Second)
		select {
		case <-ticked:
		case err := <-done:
			t.Fatalf("tick %d: Acquire returned %v while the slot was held", i, err)
		}
	}
	waitArmed(clock, 2)
	release()
	if err := <-done; err != nil {
		t.Fatalf("AcquireTick = %v", err)
	}
	if n := clock.Armed(); n != 0 {
		t.Errorf("%d timers left armed, want 0", n)
	}
}
