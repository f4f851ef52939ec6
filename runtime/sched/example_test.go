package sched_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-llm/warden/runtime/sched"
)

func ExampleScheduler_Acquire() {
	s := sched.New(sched.Config{
		Slots: func(model string) int {
			if model == "nomic-embed-text" {
				return 1 // embedding-only: the backend forces one slot
			}
			return 4
		},
		Weight: func(keyID string) int {
			if keyID == "team" {
				return 2
			}
			return 1
		},
	})

	// prompt tokens plus the output cap
	release, waited, err := s.Acquire(context.Background(), "llama3:latest", "team", 512+256)
	var qe *sched.QueueError
	switch {
	case errors.Is(err, sched.ErrKeyQueueFull) && errors.As(err, &qe):
		fmt.Println("429, Retry-After", qe.RetryAfter)
		return
	case err != nil:
		fmt.Println("503 or client gone:", err)
		return
	}
	defer release() // when the backend call ends
	fmt.Println("waited", waited, "in flight", s.Stats().Models["llama3:latest"].InFlight)
	// Output: waited 0s in flight 1
}
