package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/sched"
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
		{&sched.QueueError{Reason: sched.ReasonQueueFull}, http.StatusServiceUnavailable},
		{&sched.QueueError{Reason: sched.ReasonQueueTimeout}, http.StatusServiceUnavailable},
	} {
		ae := toAPIError(queueError(tt.err))
		if ae.Status != tt.status || ae.RetryAfter < 1 {
			t.Errorf("%v → %d retry %d, want %d with Retry-After", tt.err, ae.Status, ae.RetryAfter, tt.status)
		}
	}
}
