package audit

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// TestTicketsShareTransactions: a record queued with Begin commits at once
// while its request is the only one open; with others open it waits for
// the next record someone waits for and shares its transaction, or for
// Flush, or for Linger at most; Close commits what still waits.
func TestTicketsShareTransactions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		db := storetest.OpenDir(t, dir)
		const linger = 50 * time.Millisecond
		w := startWriter(t, db, dir, Config{Linger: linger})
		begin := func(i int) (*Ticket, chan error) {
			t.Helper()
			done := make(chan error, 1)
			rec := req(i)
			rec.Kind = KindRequest
			tk, err := w.Begin(t.Context(), rec, func(_ int64, err error) { done <- err })
			if err != nil {
				t.Fatal(err)
			}
			return tk, done
		}
		waiting := func(what string, done chan error) {
			t.Helper()
			synctest.Wait()
			select {
			case err := <-done:
				t.Fatalf("%s: committed at once (err %v), want it to wait", what, err)
			default:
			}
		}
		committed := func(what string, done chan error, commits int64) {
			t.Helper()
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			synctest.Wait()
			if got := w.Stats().Commits; got != commits {
				t.Fatalf("%s: %d transactions, want %d", what, got, commits)
			}
		}

		first, d1 := begin(1)
		committed("the only open request", d1, 1)

		second, d2 := begin(2)
		waiting("a second open request", d2)
		if _, err := w.Append(t.Context(), req(1)); err != nil { // the first request's completion
			t.Fatal(err)
		}
		committed("with another record", d2, 2)
		first.End()

		third, d3 := begin(3)
		waiting("before Flush", d3)
		third.Flush()
		committed("after Flush", d3, 3)

		fourth, d4 := begin(4)
		waiting("within Linger", d4)
		time.Sleep(linger)
		committed("after Linger", d4, 4)

		_, d5 := begin(5)
		waiting("before Close", d5)
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		committed("at Close", d5, 5)
		for _, tk := range []*Ticket{second, third, fourth} {
			tk.End()
			tk.End() // a second End changes nothing
		}
		if got := w.open.Load(); got != 1 { // the fifth's
			t.Errorf("%d tickets open, want 1", got)
		}
		if st := w.Stats(); st.Records != 6 {
			t.Errorf("%d records committed, want 6", st.Records)
		}
		if rep := mustVerify(t, db, dir, nil); rep.Records != 6 {
			t.Errorf("verify: %d records, want 6", rep.Records)
		}
		if _, err := w.Begin(t.Context(), req(6), func(int64, error) {}); err != ErrClosed {
			t.Errorf("Begin after Close: %v, want ErrClosed", err)
		}
	})
}
