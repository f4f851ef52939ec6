package quota

import (
	"context"
	"errors"
	"sync/atomic"
)

// Reservation is one admitted request's hold on its key's limits: a slot
// of concurrency and prompt + output cap tokens of every token budget. It
// ends with exactly one Settle or Fail; later calls do nothing.
type Reservation struct {
	l        *Limiter
	ks       *keyState
	keyID    string
	user     string // the end user whose buckets these are ("": the key's)
	reserved int64  // prompt estimate + cap
	cap      int64
	lowered  bool
	tookTPM  bool   // the tokens-per-minute bucket was charged at admission
	day      string // the buckets the request was admitted in
	month    string
	done     atomic.Bool
	// also is the end user's reservation a delegate request holds beside
	// its key's: it ends with this one.
	also *Reservation
}

// OutputCap is the output cap the request must run with: the one it was
// admitted with, or lower when Lowered.
func (r *Reservation) OutputCap() int64 { return r.cap }

// Lowered reports that the cap was lowered to fit the remaining budget (the
// server says so in x-warden-max-tokens).
func (r *Reservation) Lowered() bool { return r.lowered || (r.also != nil && r.also.lowered) }

// Settle ends the request with the backend's real counts: it charges
// prompt + output tokens and refunds the rest of the reservation to every
// budget. A count above the reservation (the prompt estimate missed part
// of what the backend processed) is charged in full, and logged at debug
// as the estimator's miss. It returns once the charge is written to the
// database, or when ctx ends; in that case the write still happens and
// Close waits for it. A second Settle or Fail does nothing.
func (r *Reservation) Settle(ctx context.Context, promptTokens, outputTokens int64) error {
	if !r.done.CompareAndSwap(false, true) {
		return nil
	}
	var userErr error
	if r.also != nil {
		userErr = r.also.Settle(ctx, promptTokens, outputTokens)
	}
	charge := max(promptTokens, 0) + max(outputTokens, 0)
	if charge > r.reserved {
		r.l.log.Debug("quota: estimate below the real count", "key_id", r.keyID,
			"reserved", r.reserved, "prompt_tokens", promptTokens, "output_tokens", outputTokens)
	}
	r.release(charge)
	return errors.Join(r.persist(ctx, charge), userErr)
}

// Fail ends a request that has no counts (cancelled or failed): it charges
// the whole reservation. Like Settle, it is a no-op after the first end.
func (r *Reservation) Fail(ctx context.Context) error {
	if !r.done.CompareAndSwap(false, true) {
		return nil
	}
	var userErr error
	if r.also != nil {
		userErr = r.also.Fail(ctx)
	}
	r.release(r.reserved)
	return errors.Join(r.persist(ctx, r.reserved), userErr)
}

// cancel ends a reservation that was never used (its partner was refused):
// it charges nothing and writes nothing.
func (r *Reservation) cancel() {
	if r.done.CompareAndSwap(false, true) {
		r.release(0)
	}
}

// shrink lowers the output cap to cap (below the current one) and gives
// the difference back to every budget at once.
func (r *Reservation) shrink(cap int64) {
	if cap >= r.cap {
		return
	}
	d := r.cap - cap
	ks := r.ks
	ks.mu.Lock()
	defer ks.mu.Unlock()
	r.cap, r.reserved, r.lowered = cap, r.reserved-d, true
	if r.tookTPM {
		ks.tpm.refund(d)
	}
	if ks.day.name == r.day {
		ks.day.reserved -= d
	}
	if ks.month.name == r.month {
		ks.month.reserved -= d
	}
}

// release frees the concurrency slot, moves charge from reserved to used
// and refunds the rest to the tokens-per-minute bucket (or takes what the
// charge exceeds the reservation by, which may leave the bucket in debt).
func (r *Reservation) release(charge int64) {
	ks := r.ks
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.inflight--
	if r.tookTPM {
		if charge > r.reserved {
			ks.tpm.take(charge - r.reserved)
		} else {
			ks.tpm.refund(r.reserved - charge)
		}
	}
	// After a rollover the old bucket is gone from memory: the charge only
	// goes to its row in the database.
	if ks.day.name == r.day {
		ks.day.reserved -= r.reserved
		ks.day.used += charge
	}
	if ks.month.name == r.month {
		ks.month.reserved -= r.reserved
		ks.month.used += charge
	}
}

// persist writes charge to the day and month rows and waits for the
// commit (or ctx).
func (r *Reservation) persist(ctx context.Context, charge int64) error {
	if charge <= 0 {
		return nil
	}
	b, err := r.l.writer.add(ctx, r.keyID, r.user, r.day, r.month, charge, r.l.now().UnixMilli())
	if err != nil || b == nil {
		return err
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return nil
	}
}
