package main

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/sched"
)

// chatFunc is a guard.Chatter made of a function.
type chatFunc func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error

func (f chatFunc) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return f(ctx, req, fn)
}

// TestProbeGuardCallWaitsForSlot: a scheduled probe run's guard call takes
// its turn in the fair queue: while a user's request holds the guard
// model's one slot, the guard model is not called; once the slot is free
// it is, and the call gives its slot back.
func TestProbeGuardCallWaitsForSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q := sched.New(sched.Config{Slots: func(string) int { return 1 }})
		release, _, err := q.Acquire(ctx, "guard", "user-key", 10)
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		qc := queuedChatter{queue: q, keyID: func() string { return "probe-key" },
			next: chatFunc(func(_ context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
				calls++
				return fn(api.ChatResponse{Model: req.Model, Done: true})
			})}
		done := make(chan error, 1)
		go func() {
			done <- qc.Chat(ctx, &api.ChatRequest{Model: "guard", Messages: []api.Message{{Role: "user", Content: "is this safe?"}}},
				func(api.ChatResponse) error { return nil })
		}()
		synctest.Wait()
		if calls != 0 {
			t.Fatal("the guard model was called while a user's request held its only slot")
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Fatalf("guard model called %d times, want 1", calls)
		}
		r2, _, err := q.Acquire(ctx, "guard", "user-key", 10)
		if err != nil {
			t.Fatalf("the slot after the guard call: %v", err)
		}
		r2()
	})
}
