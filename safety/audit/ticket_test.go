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
		begin, waiting, committed := ticketSteps(t, w)

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

// TestCommitDelay: with CommitDelay set, a record someone waits for waits
// for the records of other open requests, for CommitDelay at most; it
// commits at once when its request is the only one open or when every
// open request's record is already in the batch. Soon bounds a Ticket's
// record by CommitDelay instead of Linger.
func TestCommitDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		db := storetest.OpenDir(t, dir)
		const delay = 5 * time.Millisecond
		w := startWriter(t, db, dir, Config{Linger: time.Hour, CommitDelay: delay})
		begin, pending, committed := ticketSteps(t, w)
		appendAsync := func(i int) chan error {
			done := make(chan error, 1)
			go func() {
				_, err := w.Append(t.Context(), req(i))
				done <- err
			}()
			return done
		}

		a, da := begin(1)
		committed("the only open request's request record", da, 1)
		ca := appendAsync(1)
		committed("the only open request's completion", ca, 2)
		a.End()

		b, db1 := begin(2)
		committed("b alone", db1, 3)
		a2, da2 := begin(3) // a second request
		pending("a request record with b open", da2)
		cb := appendAsync(2)
		pending("b's completion with a2 open", cb)
		time.Sleep(delay)
		committed("after CommitDelay", cb, 4)
		if err := <-da2; err != nil { // it rode along
			t.Fatal(err)
		}
		b.End()

		c, dc := begin(4)
		pending("c's request record with a2 open", dc)
		c.Soon()
		pending("c's request record after Soon, within CommitDelay", dc)
		time.Sleep(delay)
		committed("c's request record after Soon and CommitDelay", dc, 5)

		ca2, cc := appendAsync(3), appendAsync(4)
		committed("completions of every open request", ca2, 6)
		if err := <-cc; err != nil {
			t.Fatal(err)
		}
		a2.End()
		c.End()
		if rep := mustVerify(t, db, dir, nil); rep.Records != 8 {
			t.Errorf("verify: %d records, want 8", rep.Records)
		}
	})
}

// ticketSteps returns the steps of a ticket test on w: begin queues
// request record i with Begin; waiting checks that a record has not
// committed once everything else is blocked; committed that it has, and
// that w has committed commits transactions in all.
func ticketSteps(t *testing.T, w *Writer) (
	begin func(i int) (*Ticket, chan error),
	waiting func(what string, done chan error),
	committed func(what string, done chan error, commits int64),
) {
	begin = func(i int) (*Ticket, chan error) {
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
	waiting = func(what string, done chan error) {
		t.Helper()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("%s: committed at once (err %v), want it to wait", what, err)
		default:
		}
	}
	committed = func(what string, done chan error, commits int64) {
		t.Helper()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		default:
			t.Fatalf("%s: still waiting", what)
		}
		if got := w.Stats().Commits; got != commits {
			t.Fatalf("%s: %d transactions, want %d", what, got, commits)
		}
	}
	return begin, waiting, committed
}
