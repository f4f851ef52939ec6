package store

import (
	"context"
	"time"
)

// A writeGate lets one of this process's writers at a time at the
// database. SQLite allows one writer too, but a second writer meets its
// busy handler, which sleeps between tries: a millisecond at first, then
// 2, 5, 10 ms and more, long after the lock was freed. The server's writers
// (the audit writer, the usage writer, key and outbox updates) would pay
// that on every collision, and at one client they collide on most
// requests. Queued here instead, the next writer goes as soon as the
// previous one commits. Writers in other processes (admin commands) still
// meet SQLite's busy handler, and a writer waits here no longer than the
// busy timeout, then fails as SQLite would have.
type writeGate struct {
	slot    chan struct{}
	timeout time.Duration
}

func newWriteGate(timeout time.Duration) *writeGate {
	return &writeGate{slot: make(chan struct{}, 1), timeout: timeout}
}

// enter waits for the gate; leave must follow a nil error.
func (g *writeGate) enter(ctx context.Context) error {
	select {
	case g.slot <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case g.slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errBusy
	}
}

func (g *writeGate) leave() { <-g.slot }
