package server

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// sseWriter writes a server-sent event stream the way OpenAI does:
// "data: {json}\n\n" events ending with "data: [DONE]". Until the first
// event it sends comment lines every interval so proxies and clients keep
// the connection open while a model loads. Headers go out with the first
// write; after that, errors must be sent as events.
type sseWriter struct {
	w        gin.ResponseWriter
	interval time.Duration

	mu      sync.Mutex
	started bool
	closed  bool
	events  int
	timer   *time.Timer
}

func newSSE(w gin.ResponseWriter, keepAlive time.Duration) *sseWriter {
	s := &sseWriter{w: w, interval: keepAlive}
	s.mu.Lock() // the timer may fire before it is stored
	s.timer = time.AfterFunc(keepAlive, s.keepAlive)
	s.mu.Unlock()
	return s
}

// keepAlive runs on the timer's goroutine. It writes only while holding mu
// and never after stop, so the handler owns every write.
func (s *sseWriter) keepAlive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.events > 0 {
		return
	}
	s.startLocked()
	if _, err := s.w.WriteString(": keep-alive\n\n"); err != nil {
		return
	}
	s.w.Flush()
	s.timer.Reset(s.interval)
}

func (s *sseWriter) startLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

// Started reports whether headers have gone out, after which an error can
// only be sent as an event.
func (s *sseWriter) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Event writes one data event holding v as JSON.
func (s *sseWriter) Event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw(b)
}

// Done writes the terminating "data: [DONE]" event.
func (s *sseWriter) Done() error { return s.raw([]byte("[DONE]")) }

// ErrorEvent sends an error as the stream's last event.
func (s *sseWriter) ErrorEvent(ae *apiError) error { return s.Event(ae.body()) }

func (s *sseWriter) raw(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLocked()
	s.events++
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	s.w.Flush()
	return nil
}

// Stop ends the keep-alive timer; no keep-alive write happens after it
// returns, so only the handler writes from then on.
func (s *sseWriter) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.timer.Stop()
}
