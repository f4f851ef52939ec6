// Package sched shares the backend's batch slots fairly among API keys.
//
// Each model has a queue and a number of slots (the backend's parallel
// setting; 1 for embedding-only models). At most that many requests for a
// model are in flight at once, plus Config.Prefetch more that wait inside
// the backend so it prepares the next request while its batch runs:
// batching happens inside the backend and fairness happens here. Waiting requests are dispatched by deficit round
// robin across keys: on each visit a key's deficit grows by Quantum×weight,
// and the key's oldest request is dispatched once the deficit covers its cost
// in tokens. While other keys wait, no key is given more than slots−1 of a
// model's slots, so a light key always finds one soon. Inside a key, the
// end users a delegate key names (AcquireUser) share the key's turns by a
// round robin of their own, one request per turn with deficits in tokens,
// so one heavy user cannot starve the key's others. Queues are bounded
// globally and per key, waiting is bounded by a timeout, and a cancelled
// caller leaves the queue at once.
//
// Dispatch happens inside Acquire, the release funcs and Kick: the
// scheduler runs no goroutine of its own. A Gate can hold a model's queue
// (a GPU too hot, a model that does not fit in free memory); whoever owns
// the gate's inputs calls Kick when it may have opened. A key is an opaque
// id; the package knows nothing of HTTP or GPUs.
package sched

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultSlots          = 4
	DefaultMaxQueue       = 256
	DefaultMaxQueuePerKey = 64
	DefaultQueueTimeout   = 2 * time.Minute
	DefaultQuantum        = 1024
	DefaultGateRetryAfter = 5 * time.Second
)

// Config holds the scheduler's settings; zero values take the defaults.
type Config struct {
	// Slots reports a model's slots: the backend's parallel setting, 1 for
	// embedding-only models. It is asked on every Acquire, outside the
	// scheduler's lock. Nil means DefaultSlots; results below 1 count as 1.
	Slots func(model string) int
	// MaxQueue bounds the requests waiting over all models (ErrQueueFull).
	// Zero means DefaultMaxQueue, negative means no bound.
	MaxQueue int
	// MaxQueuePerKey bounds the requests one key has waiting over all models
	// (ErrKeyQueueFull). Zero means DefaultMaxQueuePerKey, negative no bound.
	MaxQueuePerKey int
	// QueueTimeout bounds the wait for a slot (ErrQueueTimeout). Zero means
	// DefaultQueueTimeout, negative means no timeout.
	QueueTimeout time.Duration
	// Weight is a key's share in the round robin; nil or below 1 means 1.
	// It is asked when a key starts holding or waiting for a model, under
	// the scheduler's lock: it must be cheap and not call the Scheduler.
	Weight func(keyID string) int
	// Gate reports whether requests for model may be dispatched to the
	// backend now. While it says no, the model's requests wait in the queue
	// (bounds and QueueTimeout still apply); the scheduler asks again when a
	// slot frees, a request arrives, or Kick is called, so the gate's owner
	// must call Kick when it may have opened. It is asked under the
	// scheduler's lock: it must be cheap and not call the Scheduler. Nil
	// means always open.
	Gate func(model string) bool
	// GateRetryAfter is the Retry-After hint for a request that timed out
	// while its model's gate was closed. Zero means DefaultGateRetryAfter.
	GateRetryAfter time.Duration
	// Prefetch is how many requests per model are dispatched beyond its
	// slots: they wait in the backend's own queue, which prepares them
	// (template, tokens) while its slots work, so a slot that frees starts
	// the next request at once. They are picked in the same fair order,
	// but earlier: a request arriving later cannot pass them. While other
	// keys wait, a key still holds at most slots−1 (at least 1), prefetched
	// ones included. Zero (the default) or below dispatches only into free
	// slots.
	Prefetch int
	// Quantum is the deficit, in tokens, a key of weight 1 gains per round.
	// Zero means DefaultQuantum.
	Quantum int64
	// Now is the clock for wait times; nil means time.Now.
	Now func() time.Time
	// After starts a timer (the queue timeout, AcquireTick's ticks): it
	// returns a channel that receives once d has passed and a func that
	// stops it. Nil means time.NewTimer; tests pass a fake clock's timer.
	After func(d time.Duration) (<-chan time.Time, func() bool)
}

// Scheduler admits requests onto each model's slots. It is safe for
// concurrent use.
type Scheduler struct {
	cfg Config

	mu       sync.Mutex
	models   map[string]*model // busy models and a few idle ones
	waiting  int               // over all models
	keyWaits map[string]int    // per key, over all models
	// userWaits counts the waiters of each end user of a key, over all
	// models: one user may fill at most half the key's queue bound.
	userWaits map[userID]int
}

// userID names one end user of one key.
type userID struct{ key, user string }

// New returns a Scheduler with cfg's zero values replaced by defaults.
func New(cfg Config) *Scheduler {
	if cfg.Slots == nil {
		cfg.Slots = func(string) int { return DefaultSlots }
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.MaxQueuePerKey == 0 {
		cfg.MaxQueuePerKey = DefaultMaxQueuePerKey
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = DefaultQueueTimeout
	}
	if cfg.Weight == nil {
		cfg.Weight = func(string) int { return 1 }
	}
	if cfg.Gate == nil {
		cfg.Gate = func(string) bool { return true }
	}
	if cfg.GateRetryAfter <= 0 {
		cfg.GateRetryAfter = DefaultGateRetryAfter
	}
	if cfg.Quantum <= 0 {
		cfg.Quantum = DefaultQuantum
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	return &Scheduler{
		cfg:      cfg,
		models:   make(map[string]*model),
		keyWaits: make(map[string]int),

		userWaits: make(map[userID]int),
	}
}

// Acquire waits for a slot on model for keyID. cost is the request's expected
// size in tokens (prompt plus output cap); the round robin charges it to the
// key. On success it returns a release func, to be called when the backend
// call ends (later calls are no-ops), and the time spent waiting. A full
// queue or a wait past QueueTimeout gives a *QueueError; a cancelled ctx
// leaves the queue at once with ctx.Err(), giving back a slot granted in the
// same instant.
func (s *Scheduler) Acquire(ctx context.Context, model, keyID string, cost int64) (release func(), waited time.Duration, err error) {
	return s.acquire(ctx, model, keyID, "", cost, 0, nil)
}

// AcquireUser is Acquire for a request a delegate key makes for an end
// user: the key's turns are shared fairly among its users (by the same
// deficit round robin, one request per turn), while the key's weight still
// sets its share against other keys. user "" is the key itself, one user
// among the others.
func (s *Scheduler) AcquireUser(ctx context.Context, model, keyID, user string, cost int64) (release func(), waited time.Duration, err error) {
	return s.acquire(ctx, model, keyID, user, cost, 0, nil)
}

// AcquireTick is Acquire calling tick each time the request has waited
// another interval of length every, in the caller's goroutine: a streaming
// handler writes its SSE keep-alive comments from tick. A nil tick or every
// ≤ 0 never ticks; tick is not called after AcquireTick returns.
func (s *Scheduler) AcquireTick(ctx context.Context, model, keyID string, cost int64, every time.Duration, tick func()) (release func(), waited time.Duration, err error) {
	return s.acquire(ctx, model, keyID, "", cost, every, tick)
}

func (s *Scheduler) acquire(ctx context.Context, model, keyID, user string, cost int64, every time.Duration, tick func()) (release func(), waited time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	slots := max(s.cfg.Slots(model), 1)
	cost = max(cost, 1)

	s.mu.Lock()
	m := s.models[model]
	if m == nil {
		m = newModel(model)
		s.models[model] = m
	}
	m.slots, m.prefetch = slots, max(s.cfg.Prefetch, 0)
	if m.waiting == 0 && m.inflight < m.capacity() && s.cfg.Gate(model) {
		k := m.key(keyID, s.cfg.Weight)
		at := s.cfg.Now()
		m.inflight++
		k.held++
		s.mu.Unlock()
		return s.releaser(m, k, at), 0, nil
	}
	if err := s.admitLocked(m, keyID, user); err != nil {
		s.mu.Unlock()
		return nil, 0, err
	}
	w := &waiter{
		key:   m.key(keyID, s.cfg.Weight),
		user:  user,
		cost:  cost,
		enq:   s.cfg.Now(),
		ready: make(chan struct{}),
	}
	m.enqueue(w)
	s.waiting++
	s.keyWaits[keyID]++
	if user != "" {
		s.userWaits[userID{keyID, user}]++
	}
	s.dispatchLocked(m)
	s.mu.Unlock()

	var timeout <-chan time.Time
	if s.cfg.QueueTimeout > 0 {
		c, stop := s.cfg.After(s.cfg.QueueTimeout)
		defer stop()
		timeout = c
	}
	var ticks <-chan time.Time
	stopTick := func() bool { return false }
	defer func() { stopTick() }()
	if tick != nil && every > 0 {
		ticks, stopTick = s.cfg.After(every)
	}
	for {
		select {
		case <-ticks:
			tick()
			ticks, stopTick = s.cfg.After(every)
			continue
		case <-w.ready:
			return s.releaser(m, w.key, w.at), w.at.Sub(w.enq), nil
		case <-timeout:
			return s.timedOut(m, w)
		case <-ctx.Done():
			return nil, s.cancelled(m, w), ctx.Err()
		}
	}
}

// timedOut ends a wait that hit QueueTimeout.
func (s *Scheduler) timedOut(m *model, w *waiter) (func(), time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted { // granted as the timer fired: the caller is still here
		return s.releaser(m, w.key, w.at), w.at.Sub(w.enq), nil
	}
	s.leaveLocked(m, w)
	if !s.cfg.Gate(m.name) {
		ra := max(s.cfg.GateRetryAfter, minRetryAfter).Round(time.Second)
		return nil, s.cfg.Now().Sub(w.enq), &QueueError{Reason: ReasonGateClosed, RetryAfter: ra}
	}
	ra := retryAfter(m.waiting, m.slots, m.hold)
	return nil, s.cfg.Now().Sub(w.enq), &QueueError{Reason: ReasonQueueTimeout, RetryAfter: ra}
}

// cancelled ends a wait whose ctx is done and reports the time waited.
func (s *Scheduler) cancelled(m *model, w *waiter) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted { // granted as ctx ended: give the slot back
		s.finishLocked(m, w.key, time.Time{})
	} else {
		s.leaveLocked(m, w)
	}
	return s.cfg.Now().Sub(w.enq)
}

// admitLocked checks the queue bounds for one more waiter of keyID (and
// its end user, if any) on m. An end user may have at most half the key's
// bound waiting, so one user cannot fill the queue the key's other users
// need.
func (s *Scheduler) admitLocked(m *model, keyID, user string) error {
	if limit := s.cfg.MaxQueuePerKey; limit > 0 && user != "" && s.userWaits[userID{keyID, user}] >= max(limit/2, 1) {
		return &QueueError{
			Reason:     ReasonUserQueueFull,
			RetryAfter: retryAfter(s.userWaits[userID{keyID, user}], max(m.slots-1, 1), m.hold),
		}
	}
	if limit := s.cfg.MaxQueuePerKey; limit > 0 && s.keyWaits[keyID] >= limit {
		ahead := 0
		if k := m.keys[keyID]; k != nil {
			ahead = len(k.waiters)
		}
		return &QueueError{
			Reason:     ReasonKeyQueueFull,
			RetryAfter: retryAfter(ahead, max(m.slots-1, 1), m.hold),
		}
	}
	if limit := s.cfg.MaxQueue; limit > 0 && s.waiting >= limit {
		return &QueueError{
			Reason:     ReasonQueueFull,
			RetryAfter: retryAfter(m.waiting, m.slots, m.hold),
		}
	}
	return nil
}

// dispatchLocked fills m's free slots (and its prefetch) from its queue,
// unless m's gate is closed.
func (s *Scheduler) dispatchLocked(m *model) {
	if m.waiting == 0 || m.inflight >= m.capacity() || !s.cfg.Gate(m.name) {
		return
	}
	for m.inflight < m.capacity() {
		w := m.next(s.cfg.Quantum)
		if w == nil {
			return
		}
		s.unwaitLocked(w.key.id, w.user)
		m.inflight++
		w.key.held++
		w.granted = true
		w.at = s.cfg.Now()
		close(w.ready)
	}
}

// Kick dispatches waiting requests into free slots. The owner of Config.Gate
// calls it when the gate may have opened (after each GPU sample, say); it is
// cheap when nothing waits.
func (s *Scheduler) Kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.models {
		s.dispatchLocked(m)
	}
}

// leaveLocked takes a waiter that gave up out of the queue.
func (s *Scheduler) leaveLocked(m *model, w *waiter) {
	m.remove(w)
	s.unwaitLocked(w.key.id, w.user)
	m.dropKey(w.key)
	s.dispatchLocked(m) // a key capped at slots−1 may now take the last slot
	s.forgetLocked(m)
}

// finishLocked gives back a slot k held since at (zero: not used).
func (s *Scheduler) finishLocked(m *model, k *keyState, at time.Time) {
	m.inflight--
	k.held--
	if !at.IsZero() {
		m.observe(s.cfg.Now().Sub(at))
	}
	m.dropKey(k)
	s.dispatchLocked(m)
	s.forgetLocked(m)
}

func (s *Scheduler) unwaitLocked(keyID, user string) {
	if user != "" {
		id := userID{keyID, user}
		if s.userWaits[id]--; s.userWaits[id] <= 0 {
			delete(s.userWaits, id)
		}
	}
	s.waiting--
	if s.keyWaits[keyID]--; s.keyWaits[keyID] <= 0 {
		delete(s.keyWaits, keyID)
	}
}

// maxIdleModels is how many idle models keep their state (and their hold
// time average) so that an uncontended Acquire allocates little.
const maxIdleModels = 32

// forgetLocked drops an idle model beyond maxIdleModels, so that names seen
// once do not pile up.
func (s *Scheduler) forgetLocked(m *model) {
	if m.idle() && len(s.models) > maxIdleModels && s.models[m.name] == m {
		delete(s.models, m.name)
	}
}

func (s *Scheduler) releaser(m *model, k *keyState, at time.Time) func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		s.mu.Lock()
		s.finishLocked(m, k, at)
		s.mu.Unlock()
	}
}

// Stats is a snapshot of the scheduler for metrics.
type Stats struct {
	Models map[string]ModelStats // models with requests in flight or waiting
	Keys   map[string]KeyStats   // keys with requests in flight or waiting
}

// ModelStats describes one model's slots and queue.
type ModelStats struct {
	Slots    int
	InFlight int
	Queued   int
}

// KeyStats describes one key's requests over all models.
type KeyStats struct {
	InFlight int
	Queued   int
}

// Stats returns a snapshot of slots in use and requests waiting.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Models: make(map[string]ModelStats, len(s.models)),
		Keys:   make(map[string]KeyStats),
	}
	for name, m := range s.models {
		if m.idle() {
			continue
		}
		st.Models[name] = ModelStats{Slots: m.slots, InFlight: m.inflight, Queued: m.waiting}
		for id, k := range m.keys {
			ks := st.Keys[id]
			ks.InFlight += k.held
			ks.Queued += len(k.waiters)
			st.Keys[id] = ks
		}
	}
	return st
}
