// Package testwait holds the one way tests wait for a condition that another
// goroutine or process makes true.
package testwait

import (
	"testing"
	"time"
)

// Patience is how long For waits before failing. It is a guard against a
// hang, not a timing assertion: nothing should come close to it.
const Patience = time.Minute

// For polls cond until it holds, failing t with what after Patience. It
// polls often at first and backs off to every 100 ms.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Patience)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Patience, what)
		}
		time.Sleep(wait)
	}
}
