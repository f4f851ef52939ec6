package sched

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// req is one Acquire running in its own goroutine.
type req struct {
	key     string
	n       int // order of submission
	release func()
	waited  time.Duration
	err     error
	done    chan struct{}
}

// harness submits requests that queue and reports their grants in dispatch
// order on granted.
type harness struct {
	t       *testing.T
	s       *Scheduler
	granted chan *req
	n       int
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return &harness{t: t, s: New(cfg), granted: make(chan *req, 4096)}
}

// hold takes a slot at once and fails if it has to wait.
func (h *harness) hold(model, key string) func() {
	h.t.Helper()
	release, waited, err := h.s.Acquire(context.Background(), model, key, 1)
	if err != nil || waited != 0 {
		h.t.Fatalf("hold(%s, %s) = waited %v, err %v; want a free slot", model, key, waited, err)
	}
	return release
}

// submit starts an Acquire and returns once it is queued (or finished).
func (h *harness) submit(ctx context.Context, model, key string, cost int64) *req {
	h.t.Helper()
	return h.submitWith(model, key, func(r *req) {
		r.release, r.waited, r.err = h.s.Acquire(ctx, model, key, cost)
	})
}

// submitWith starts acquire (which fills r) for key and returns once it
// is queued (or finished).
func (h *harness) submitWith(model, key string, acquire func(r *req)) *req {
	h.t.Helper()
	h.n++
	r := &req{key: key, n: h.n, done: make(chan struct{})}
	before := h.queued(model, key)
	go func() {
		acquire(r)
		close(r.done)
		if r.err == nil {
			h.granted <- r
		}
	}()
	for h.queued(model, key) == before {
		select {
		case <-r.done:
			return r
		default:
			runtime.Gosched()
		}
	}
	return r
}

// next returns the next granted request.
func (h *harness) next() *req {
	h.t.Helper()
	select {
	case r := <-h.granted:
		return r
	case <-time.After(10 * time.Second): // a hang guard, not a timing assertion
		h.t.Fatal("no request was dispatched")
		return nil
	}
}

// none fails if a request has been granted.
func (h *harness) none() {
	h.t.Helper()
	select {
	case r := <-h.granted:
		h.t.Fatalf("request %d of %s was dispatched; want none", r.n, r.key)
	default:
	}
}

// queued is how many requests key has waiting for model.
func (h *harness) queued(model, key string) int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if m := h.s.models[model]; m != nil {
		if k := m.keys[key]; k != nil {
			return len(k.waiters)
		}
	}
	return 0
}

// drain runs cancel, releases whatever is dispatched until the scheduler is
// empty, and checks nothing leaked.
func (h *harness) drain(cancel context.CancelFunc, releases ...func()) {
	h.t.Helper()
	cancel()
	for _, r := range releases {
		r()
	}
	guard := time.After(10 * time.Second) // a hang guard, not a timing assertion
	for {
		st := h.s.Stats()
		if len(st.Models) == 0 && len(st.Keys) == 0 {
			break
		}
		select {
		case r := <-h.granted:
			r.release()
		case <-guard:
			h.t.Fatalf("scheduler never emptied: %+v (a slot the test holds?)", st)
		default:
			runtime.Gosched()
		}
	}
	for {
		select {
		case r := <-h.granted:
			r.release()
			continue
		default:
		}
		break
	}
	h.assertEmpty()
}

func (h *harness) assertEmpty() {
	h.t.Helper()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for name, m := range h.s.models {
		if !m.idle() || len(m.keys) != 0 || len(m.active) != 0 {
			h.t.Fatalf("model %s not empty: %d in flight, %d waiting, %d keys, %d active",
				name, m.inflight, m.waiting, len(m.keys), len(m.active))
		}
	}
	if h.s.waiting != 0 || len(h.s.keyWaits) != 0 || len(h.s.userWaits) != 0 {
		h.t.Fatalf("scheduler not empty: %d waiting, %d keys waiting", h.s.waiting, len(h.s.keyWaits))
	}
}

// waitArmed waits until n of clock's timers are armed.
func waitArmed(clock *storetest.Clock, n int) {
	for clock.Armed() < n {
		runtime.Gosched()
	}
}
