package server

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestQueueBoundsBackendConcurrency: with two slots, a counting backend
// never sees more than two calls at once, however many clients there are,
// and every answer says how long it queued.
func TestQueueBoundsBackendConcurrency(t *testing.T) {
	var cur, peak atomic.Int64
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return scripted("a", "b", "c")(ctx, req, fn)
	}}
	q := sched.New(sched.Config{Slots: func(string) int { return 2 }, MaxQueuePerKey: -1, MaxQueue: -1})
	ts := newTestServer(t, b, Config{Queue: q})
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := map[bool]string{true: "true", false: "false"}[i%2 == 0]
			resp, body := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != 200 || !strings.Contains(body, "abc") && !strings.Contains(body, `"c"`) {
				t.Errorf("status %d %s", resp.StatusCode, body)
			}
			if resp.Header.Get("X-Warden-Queue-Ms") == "" {
				t.Error("no x-warden-queue-ms header")
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 2 || p < 1 {
		t.Errorf("peak backend concurrency %d, want 1..2", p)
	}
}

func TestQueueRefusals(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{
		{&sched.QueueError{Reason: sched.ReasonKeyQueueFull}, http.StatusTooManyRequests},
		{&sched.QueueError{Reason: sched.ReasonUserQueueFull}, http.StatusTooManyRequests},
		{&sched.QueueError{Reason: sched.ReasonQueueFull}, http.StatusServiceUnavailable},
		{&sched.QueueError{Reason: sched.ReasonQueueTimeout}, http.StatusServiceUnavailable},
	} {
		ae := toAPIError(queueError(tt.err))
		if ae.Status != tt.status || ae.RetryAfter < 1 {
			t.Errorf("%v → %d retry %d, want %d with Retry-After", tt.err, ae.Status, ae.RetryAfter, tt.status)
		}
	}
}

// TestWeightsEndToEnd: two real keys in the key store, weights 3 and 1,
// both keeping the one slot's queue full. The key cache gives the scheduler
// each key's weight, so the heavier key gets about three backend calls for
// each of the other's, and the other is never starved.
func TestWeightsEndToEnd(t *testing.T) {
	db := storetest.Open(t)
	m := &keys.Manager{DB: db}
	_, heavy, err := m.Create(t.Context(), "os:t", keys.Spec{Name: "heavy", Weight: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, light, err := m.Create(t.Context(), "os:t", keys.Spec{Name: "light"})
	if err != nil {
		t.Fatal(err)
	}
	cache := keys.NewCache(db, time.Hour, nil)
	if err := cache.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer cache.Close()

	b, step, dispatched := steppedBackend()
	q := sched.New(sched.Config{Slots: func(string) int { return 1 }, Weight: cache.Weight, MaxQueue: -1, MaxQueuePerKey: -1})
	ts := newTestServer(t, b, Config{Queue: q, Keys: cache})
	// Each request costs its output cap plus prompt, about two quanta: a
	// key's turn then dispatches one or two requests, so the shares show
	// within a few rounds.
	send := func(key, who string, wg *sync.WaitGroup) {
		defer wg.Done()
		resp, body := postKey(t, ts, "/v1/chat/completions", "", `{"model":"demo","max_tokens":2000,"messages":[{"role":"user","content":"`+who+`"}]}`, key)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d %s", who, resp.StatusCode, body)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go send(light, "first", &wg) // takes the slot and holds it
	testwait.For(t, "the condition", func() bool { return q.Stats().Models["demo:latest"].InFlight == 1 })
	const each = 16
	for range each {
		wg.Add(2)
		go send(heavy, "heavy", &wg)
		go send(light, "light", &wg)
	}
	testwait.For(t, "the condition", func() bool { return q.Stats().Models["demo:latest"].Queued == 2*each })
	for range 2*each + 1 {
		step <- struct{}{}
	}
	wg.Wait()
	order := dispatched()
	counts := map[string]int{}
	for _, who := range order[1:17] { // the first 16 dispatched from the full queue
		counts[who]++
	}
	if counts["heavy"] < 11 || counts["heavy"] > 13 || counts["light"] < 3 {
		t.Errorf("first 16 dispatches: %v, want about 12 heavy (weight 3) and 4 light (weight 1); order %v", counts, order)
	}
}

// steppedBackend answers one request per send on step, in the order the
// scheduler dispatched them; dispatched lists each request's last message
// in that order.
func steppedBackend() (b *fakeBackend, step chan struct{}, dispatched func() []string) {
	step = make(chan struct{})
	var (
		mu    sync.Mutex
		order []string
	)
	b = &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		mu.Lock()
		order = append(order, req.Messages[len(req.Messages)-1].Content)
		mu.Unlock()
		select {
		case <-step:
		case <-ctx.Done():
			return ctx.Err()
		}
		return scripted("x")(ctx, req, fn)
	}}
	return b, step, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(order)
	}
}
