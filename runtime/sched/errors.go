package sched

import "time"

// Reasons a request is refused a place in the queue; they double as metric
// labels.
const (
	ReasonQueueFull    = "queue_full"     // the global bound was hit (503)
	ReasonKeyQueueFull = "key_queue_full" // the key's own bound was hit (429)
	// ReasonUserQueueFull: an end user of a delegate key has half the
	// key's bound waiting (429).
	ReasonUserQueueFull = "user_queue_full"
	ReasonQueueTimeout  = "queue_timeout" // waited longer than QueueTimeout (503)
	// ReasonGateClosed: waited longer than QueueTimeout while Config.Gate
	// held the model (503).
	ReasonGateClosed = "gate_closed"
)

// QueueError is returned by Acquire when a request cannot be queued or waited
// too long. RetryAfter is a hint for the Retry-After header, estimated from
// the queue ahead and recent slot hold times; it is at least one second.
type QueueError struct {
	Reason     string
	RetryAfter time.Duration
}

// Error implements error.
func (e *QueueError) Error() string {
	switch e.Reason {
	case ReasonQueueFull:
		return "sched: queue full"
	case ReasonKeyQueueFull:
		return "sched: queue full for key"
	case ReasonUserQueueFull:
		return "sched: queue full for the key's end user"
	case ReasonQueueTimeout:
		return "sched: timed out waiting for a slot"
	case ReasonGateClosed:
		return "sched: timed out while dispatch was held"
	}
	return "sched: " + e.Reason
}

// Is reports whether target is a *QueueError with the same Reason, so that
// errors.Is(err, ErrQueueFull) matches whatever the RetryAfter hint.
func (e *QueueError) Is(target error) bool {
	t, ok := target.(*QueueError)
	return ok && t.Reason == e.Reason
}

// Sentinels for errors.Is; Acquire returns fresh *QueueError values carrying
// a RetryAfter hint (use errors.As to read it).
var (
	ErrQueueFull    = &QueueError{Reason: ReasonQueueFull}
	ErrKeyQueueFull = &QueueError{Reason: ReasonKeyQueueFull}
	// ErrUserQueueFull: an end user has half its key's queue bound waiting.
	ErrUserQueueFull = &QueueError{Reason: ReasonUserQueueFull}
	ErrQueueTimeout  = &QueueError{Reason: ReasonQueueTimeout}
	ErrGateClosed    = &QueueError{Reason: ReasonGateClosed}
)

const (
	minRetryAfter   = time.Second
	maxRetryAfter   = 5 * time.Minute
	defaultHoldTime = time.Second
)

// retryAfter estimates how long until ahead requests have gone through slots
// that each take about hold: whole seconds, clamped.
func retryAfter(ahead, slots int, hold time.Duration) time.Duration {
	if hold <= 0 {
		hold = defaultHoldTime
	}
	if slots < 1 {
		slots = 1
	}
	rounds := ahead/slots + 1
	d := time.Duration(rounds) * hold
	if d < 0 || d > maxRetryAfter { // overflow or absurd
		return maxRetryAfter
	}
	d = (d + time.Second - 1).Truncate(time.Second)
	return max(d, minRetryAfter)
}
