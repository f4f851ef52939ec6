package probe

import (
	"context"
	"sync"
	"time"
)

// Scheduler calls Run every Every, the first time Every after Start. Its
// one goroutine is stopped and waited for by Close; a run in progress sees
// its context cancelled.
type Scheduler struct {
	Every time.Duration
	Run   func(ctx context.Context)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the loop; Every <= 0 starts nothing.
func (s *Scheduler) Start(ctx context.Context) {
	if s.Every <= 0 || s.Run == nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.Run(ctx)
			t.Reset(s.Every)
		}
	}()
}

// Close stops the loop and waits for it.
func (s *Scheduler) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}
