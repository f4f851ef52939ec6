package ollama

// Ollama (v0.17.4 here) can lose a slot of a loaded model when a client
// abandons a streaming chat or generate request. Its handler runs the
// generation in a goroutine that hands every piece of the answer to the
// response writer over an unbuffered channel (`ch <- res` in
// server/routes.go), from inside the callback of llm.(*llmServer).Completion,
// which holds one unit of the model's semaphore: one of OLLAMA_NUM_PARALLEL
// slots. The writer (gin's Context.Stream) stops reading that channel once
// the connection is gone. When the next piece is already on its way into the
// channel at that moment, the send blocks forever, Completion never returns
// and the slot is never released; with one slot, every later request for
// the model waits forever in Completion's semaphore. Goroutine dumps of a
// hung child show exactly that pair: a "chan send" at routes.go:2404 under
// Completion, and the next request in semaphore.Acquire under Completion.
// The runner subprocess is not involved: it frees its own sequence when the
// connection to it closes.
//
// No way of abandoning a streaming response avoids the race: the handler
// learns of it only through the connection, and closing the connection is
// the only way to stop the generation. So the client checks after every
// abandoned stream. A probe (one token of a raw prompt, not streamed, which
// takes a path without the race) must get a slot within ProbeTimeout. When it
// does not, the model is unloaded: Ollama stops its runner and drops the
// semaphore with it, and the next request loads the model afresh. Calls for
// the model wait until the check is over, so none is sent to a backend that
// may have no slot left. The goroutine stuck in the old handler stays behind
// in `ollama serve` (a few hundred KiB) until the child restarts.
//
// The probe cannot tell a lost slot from slots all busy with other requests:
// with Warden's scheduler giving the model no more requests than Ollama has
// slots, the abandoned request's own slot is free unless lost. The
// scheduler's prefetch (runtime.prefetch, default 1) hands Ollama a few
// more, which wait in its queue and take a freed slot before the probe, and
// Ollama may have fewer slots than the scheduler hands out (it forces one
// for some architectures): then a model whose slots stay busy for longer
// than ProbeTimeout can be unloaded needlessly; that costs a reload, never
// an answer.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/models"
)

// slotCheck is the check of one model's slots in progress.
type slotCheck struct {
	done  chan struct{}        // closed when the check is over
	probe *api.GenerateRequest // the probe of the latest abandoned call
	again bool                 // another call was abandoned meanwhile: check once more
}

// SlotResets returns how many times a model was unloaded because Ollama lost
// one of its slots to an abandoned stream.
func (c *Client) SlotResets() int64 { return c.resets.Load() }

// Close stops the slot checks in progress and waits for them to end, or for
// ctx. The client still works after Close but checks nothing.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close ollama client: %w", ctx.Err())
	}
}

// slotKey is the key of a model in Client.checks: its canonical name, so
// that "m" and "m:latest" share a check. A name that is no model name
// (Ollama refuses it) keys its own check: no canonical name equals it.
func slotKey(name string) string {
	if c, ok := models.Canonical(name); ok {
		return c
	}
	return name
}

// waitSlots blocks while the slots of the model are being checked.
func (c *Client) waitSlots(ctx context.Context, name string) error {
	c.mu.Lock()
	sc := c.checks[slotKey(name)]
	c.mu.Unlock()
	if sc == nil {
		return nil
	}
	select {
	case <-sc.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkSlots starts a check of the model's slots after a streaming call with
// the given runner options and keep-alive was abandoned. If a check of the
// model is running, it runs once more when that one ends.
func (c *Client) checkSlots(name string, options map[string]any, keepAlive *api.Duration) {
	probe := probeRequest(name, options, keepAlive)
	key := slotKey(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if sc := c.checks[key]; sc != nil {
		sc.probe, sc.again = probe, true
		return
	}
	sc := &slotCheck{done: make(chan struct{}), probe: probe}
	c.checks[key] = sc
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(sc.done)
		for {
			c.mu.Lock()
			probe := sc.probe
			c.mu.Unlock()
			c.checkSlot(probe)
			c.mu.Lock()
			if !sc.again || c.closed {
				delete(c.checks, key)
				c.mu.Unlock()
				return
			}
			sc.again = false
			c.mu.Unlock()
		}
	}()
}

// probeRequest is the smallest generation Ollama runs through the model's
// semaphore. It carries the abandoned call's options and keep-alive: other
// runner options (num_ctx, ...) would make Ollama reload the model, another
// keep-alive would change how long it stays loaded.
func probeRequest(name string, options map[string]any, keepAlive *api.Duration) *api.GenerateRequest {
	opts := make(map[string]any, len(options)+1)
	maps.Copy(opts, options)
	opts["num_predict"] = 1
	return &api.GenerateRequest{
		Model:     name,
		Prompt:    ".",
		Raw:       true,
		Stream:    &streamOff,
		Options:   opts,
		KeepAlive: keepAlive,
	}
}

// checkSlot runs the probe and unloads the model when it gets no slot in
// time.
func (c *Client) checkSlot(probe *api.GenerateRequest) {
	log := c.log()
	ctx, cancel := context.WithTimeout(c.ctx, c.ProbeTimeout)
	start := time.Now()
	var resp api.GenerateResponse
	err := c.do(ctx, http.MethodPost, "/api/generate", probe, &resp)
	cancel()
	switch {
	case err == nil:
		log.Debug("ollama slot check", "model", probe.Model, "took", time.Since(start))
		return
	case !errors.Is(err, context.DeadlineExceeded) || c.ctx.Err() != nil:
		// The backend is gone, restarting or refuses the model, or the
		// client is closing: no sign of a lost slot.
		log.Debug("ollama slot check", "model", probe.Model, "err", err)
		return
	}
	n := c.resets.Add(1)
	log.Warn("ollama lost a slot to an abandoned stream; unloading the model",
		"model", probe.Model, "probe_timeout", c.ProbeTimeout, "slot_resets", n)
	if err := c.unload(probe.Model); err != nil {
		log.Error("unload model with a lost slot", "model", probe.Model, "err", err)
	}
}

// unload asks Ollama to unload the model and waits until it is no longer
// running: Ollama unloads in the background, and a request sent before that
// would still get the old runner.
func (c *Client) unload(name string) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.UnloadTimeout)
	defer cancel()
	var resp api.GenerateResponse
	req := &api.GenerateRequest{Model: name, Stream: &streamOff, KeepAlive: &api.Duration{}}
	if err := c.do(ctx, http.MethodPost, "/api/generate", req, &resp); err != nil {
		return fmt.Errorf("unload: %w", err)
	}
	key := slotKey(name)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		var ps api.ProcessResponse
		if err := c.do(ctx, http.MethodGet, "/api/ps", nil, &ps); err != nil {
			return fmt.Errorf("list running models: %w", err)
		}
		running := false
		for _, m := range ps.Models {
			running = running || slotKey(m.Model) == key || slotKey(m.Name) == key
		}
		if !running {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("still running after %s: %w", c.UnloadTimeout, ctx.Err())
		}
	}
}

func (c *Client) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
