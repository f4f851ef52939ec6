package audit

import "context"

// A Ticket is a record queued with Begin, committed later.
type Ticket struct {
	w     *Writer
	ended bool
}

// Begin queues rec and returns at once; done runs on the Writer's
// goroutine with the record's seq, or the error that kept it out of the
// chain, once its transaction has ended. done must not block.
//
// The record is a request's first (its request record): it need not be
// durable until the request's answer is about to leave, so it may wait
// for the transaction of another request's record rather than pay for
// its own. It waits only while other tickets are open (begun and not
// yet ended), for at most Config.Linger, and until Flush. The caller
// calls End when its request is over (whether or not the record
// committed): open tickets tell the Writer that more records are coming.
func (w *Writer) Begin(ctx context.Context, rec Record, done func(seq int64, err error)) (*Ticket, error) {
	if err := rec.normalize(w.cfg.Now()); err != nil {
		return nil, err
	}
	p := &pending{rec: rec, lazy: true, fn: done}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.state != 1 {
		return nil, ErrClosed
	}
	w.open.Add(1)
	select {
	case w.queue <- p:
		return &Ticket{w: w}, nil
	case <-ctx.Done():
		w.open.Add(-1)
		return nil, ctx.Err()
	}
}

// Flush asks the Writer to commit the ticket's record now if it is still
// waiting for a transaction (and everything queued with it). Its done
// function reports when it has.
func (t *Ticket) Flush() {
	select {
	case t.w.kick <- struct{}{}:
	default: // a kick is pending: it commits this record too
	}
}

// Soon asks the Writer to commit the ticket's record within
// Config.CommitDelay if it is still waiting for a transaction: its
// request got the backend, and its answer will follow, but not at once.
// Until then the record may share a transaction with the records of
// other requests. With CommitDelay 0, Soon is Flush.
func (t *Ticket) Soon() {
	select {
	case t.w.soon <- struct{}{}:
	default: // a request is pending: it sets a deadline no later
	}
}

// End closes the ticket; calls after the first do nothing.
func (t *Ticket) End() {
	if !t.ended {
		t.ended = true
		t.w.open.Add(-1)
	}
}
