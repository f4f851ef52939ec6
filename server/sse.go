package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// sseBuffer bounds the events of one stream waiting for its client: the
// backend reads on while they are written, and waits (its slot held) only
// while the buffer is full, for at most the write timeout.
const sseBuffer = 64

// errNotReading ends a stream whose client stopped reading: an event could
// not be written within the write timeout, or the connection failed.
var errNotReading = errors.New("client not reading the stream")

// sseWriter writes a server-sent event stream the way OpenAI does:
// "data: {json}\n\n" events ending with "data: [DONE]". One goroutine owns
// the client's connection and writes, each event under the write timeout;
// the handler frames events and hands them over through a bounded buffer,
// so a client that stops reading holds the backend (and its slot) for no
// longer than that timeout. Until the first event it sends comment lines
// every interval, so proxies and clients keep the connection open while
// a model loads. Headers go out with the first write; after that, errors
// must be sent as events.
type sseWriter struct {
	w        gin.ResponseWriter
	rc       http.ResponseController
	timeout  time.Duration
	interval time.Duration
	onFail   func() // called once when a write fails

	q       chan sseItem
	done    chan struct{} // closed when the writer goroutine has ended
	gone    chan struct{} // closed when a write failed: the client is not reading
	pending []byte        // events framed since the last commit (handler's)
	pbuf    *[]byte       // pending's pooled home (sseBufs)
	enc     *json.Encoder // frames events into pending
	scratch []byte        // NamedEvent's encoding, reused
	closed  bool          // handler's: q is closed

	mu       sync.Mutex
	ping     []byte                      // the keep-alive written while waiting
	errEvent func(*sseWriter, *apiError) // frames an error event; nil: OpenAI's
	started  bool                        // headers sent
	header   http.Header                 // headers to send with them (nil: none)
	ready    <-chan struct{}             // nil, or keep-alives wait until it is closed (after)

	// The writer goroutine's until it acknowledges a barrier, or gone
	// is closed.
	delivered strings.Builder // the content of the events written
	pieces    int             // the backend pieces whose events were written
}

// sseItem is what one commit hands to the writer: its events, the
// content they deliver (for the audit record) and the pieces they carry.
// A barrier item carries only ack, closed once everything before it is
// written.
type sseItem struct {
	data    []byte
	buf     *[]byte // data's pooled home, returned once it is written
	content string
	pieces  int
	ack     chan struct{}
}

// keepAliveComment is the keep-alive of OpenAI's streams: an SSE comment.
var keepAliveComment = []byte(": keep-alive\n\n")

// sseHeaderValues go on every stream, shared like securityHeaderValues.
var sseHeaderValues = http.Header{
	"Content-Type":      {"text/event-stream; charset=utf-8"},
	"Cache-Control":     {"no-cache"},
	"Connection":        {"keep-alive"},
	"X-Accel-Buffering": {"no"},
}

func newSSE(w gin.ResponseWriter, keepAlive, timeout time.Duration, onFail func()) *sseWriter {
	s := &sseWriter{
		ping:     keepAliveComment,
		w:        w,
		rc:       *http.NewResponseController(w), // a copy: no allocation
		timeout:  timeout,
		interval: keepAlive,
		onFail:   onFail,
		q:        make(chan sseItem, sseBuffer),
		done:     make(chan struct{}),
		gone:     make(chan struct{}),
	}
	go s.run()
	return s
}

// run is the writer goroutine; Close ends it and waits for it.
func (s *sseWriter) run() {
	defer close(s.done)
	keepAlive := time.NewTimer(s.interval)
	defer keepAlive.Stop()
	tick := keepAlive.C
	var held <-chan struct{} // a keep-alive due, waiting for ready
	failed := false
	items := make([]sseItem, 0, 8) // a batch, reused
	for {
		select {
		case it, ok := <-s.q:
			if !ok {
				return
			}
			tick, held = nil, nil // keep-alives only until the first event
			if it.ack != nil {
				close(it.ack)
				continue
			}
			// The items already waiting go out with this one, with one
			// flush: a fast backend's events cost a syscall per batch,
			// not one each.
			batch := append(items[:0], it)
			var (
				next sseItem // a barrier after the batch
				end  bool    // q is closed
			)
		gather:
			for {
				select {
				case more, ok := <-s.q:
					switch {
					case !ok:
						end = true
					case more.ack != nil:
						next = more
					default:
						batch = append(batch, more)
						continue
					}
					break gather
				default:
					break gather
				}
			}
			switch {
			case failed:
			case s.write(batch...) != nil:
				failed = true
			default:
				for _, b := range batch {
					s.delivered.WriteString(b.content)
					s.pieces += b.pieces
				}
			}
			for _, b := range batch {
				giveBack(b)
			}
			clear(batch)
			items = batch[:0]
			if next.ack != nil {
				close(next.ack)
			}
			if end {
				return
			}
		case <-tick:
			if r := s.readyChan(); r != nil {
				select {
				case <-r:
				default:
					tick, held = nil, r // not yet: the keep-alive goes out when it is
					continue
				}
			}
			if s.write(sseItem{data: s.keepAlive()}) != nil {
				failed, tick = true, nil
				continue
			}
			keepAlive.Reset(s.interval)
		case <-held:
			held, tick = nil, keepAlive.C
			if s.write(sseItem{data: s.keepAlive()}) != nil {
				failed, tick = true, nil
				continue
			}
			keepAlive.Reset(s.interval)
		}
	}
}

// write sends the items' events and flushes them, within the write
// timeout.
func (s *sseWriter) write(items ...sseItem) error {
	s.start()
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	var err error
	for _, it := range items {
		if _, err = s.w.Write(it.data); err != nil {
			break
		}
	}
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		close(s.gone)
		if s.onFail != nil {
			s.onFail()
		}
	}
	return err
}

// after holds the keep-alives back until ready is closed: the handler
// writes no event before then either, so nothing at all leaves before it
// (the request record is durable). A nil ready holds nothing.
func (s *sseWriter) after(ready <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = ready
}

// named makes the stream one of named events: ping is its keep-alive
// (nil: the comment), errEvent frames its error events. Call it before
// the first event.
func (s *sseWriter) named(ping []byte, errEvent func(*sseWriter, *apiError)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ping != nil {
		s.ping = ping
	}
	s.errEvent = errEvent
}

func (s *sseWriter) keepAlive() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ping
}

func (s *sseWriter) readyChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

func (s *sseWriter) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	for k, v := range s.header {
		h[k] = v
	}
	for k, v := range sseHeaderValues {
		h[k] = v
	}
	s.w.WriteHeader(http.StatusOK)
}

// Header sets a response header while the headers have not gone out; it
// reports whether they had not.
func (s *sseWriter) Header(key, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	if s.header == nil {
		s.header = http.Header{}
	}
	s.header.Set(key, value)
	return true
}

// copyHeaders sets the headers the stream would have sent on the plain
// answer that replaces it; call it after Close, when nothing was sent.
func (s *sseWriter) copyHeaders() {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.w.Header()
	for k, v := range s.header {
		h[k] = v
	}
}

// Event frames one data event holding v as JSON; commit sends it.
func (s *sseWriter) Event(v any) error {
	if s.enc == nil {
		s.enc = json.NewEncoder(eventFramer{s})
	}
	return s.enc.Encode(v) // json.Marshal's bytes, framed by eventFramer
}

// eventFramer frames what the encoder writes, one JSON value and a
// newline per Write (nothing when it fails), as a data event.
type eventFramer struct{ s *sseWriter }

func (f eventFramer) Write(b []byte) (int, error) {
	s := f.s
	s.grab()
	s.pending = append(s.pending, "data: "...)
	s.pending = append(s.pending, b...)
	s.pending = append(s.pending, '\n')
	return len(b), nil
}

// sseBufs holds the buffers events are framed in: the writer returns
// each once it is written (the connection's writer copies it).
var sseBufs = sync.Pool{New: func() any { return new([]byte) }}

// grab takes a pooled buffer for pending when it has none.
func (s *sseWriter) grab() {
	if s.pbuf == nil {
		s.pbuf = sseBufs.Get().(*[]byte)
		s.pending = (*s.pbuf)[:0]
	}
}

// giveBack returns a written item's buffer to the pool.
func giveBack(it sseItem) {
	if it.buf != nil && cap(it.data) <= 64<<10 {
		*it.buf = it.data[:0]
		sseBufs.Put(it.buf)
	}
}

// Done frames the terminating "data: [DONE]" event.
func (s *sseWriter) Done() { s.frame([]byte("[DONE]")) }

// ErrorEvent frames an error as the stream's last event.
func (s *sseWriter) ErrorEvent(ae *apiError) {
	s.mu.Lock()
	frame := s.errEvent
	s.mu.Unlock()
	if frame != nil {
		frame(s, ae)
		return
	}
	_ = s.Event(ae.body())
}

// NamedEvent frames one event of the given name holding v as JSON, as
// Anthropic's and the Responses API's streams send them.
func (s *sseWriter) NamedEvent(name string, v any) error {
	b, err := appendJSONValue(s.scratch[:0], v) // json.Marshal's bytes
	if err != nil {
		return err
	}
	s.scratch = b
	s.grab()
	s.pending = append(s.pending, "event: "...)
	s.pending = append(s.pending, name...)
	s.pending = append(s.pending, '\n')
	s.frame(b)
	return nil
}

func (s *sseWriter) frame(data []byte) {
	s.grab()
	s.pending = append(s.pending, "data: "...)
	s.pending = append(s.pending, data...)
	s.pending = append(s.pending, "\n\n"...)
}

// commit hands the events framed since the last commit to the writer, as
// one write delivering content and pieces. It waits only while the buffer
// is full, and returns errNotReading once the client is not reading, or
// ctx's error.
func (s *sseWriter) commit(ctx context.Context, content string, pieces int) error {
	if len(s.pending) == 0 {
		return nil
	}
	it := sseItem{data: s.pending, buf: s.pbuf, content: content, pieces: pieces}
	s.pending, s.pbuf = nil, nil
	return s.send(ctx, it)
}

func (s *sseWriter) send(ctx context.Context, it sseItem) error {
	select {
	case s.q <- it:
		return nil
	case <-s.gone:
		return errNotReading
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns once every event committed so far is written (or the
// writer has failed), and stops the keep-alives: after it, the writer
// reports what was delivered. The wait is bounded by the write timeout.
func (s *sseWriter) wait() {
	ack := make(chan struct{})
	if s.send(context.Background(), sseItem{ack: ack}) != nil {
		return
	}
	select {
	case <-ack:
	case <-s.gone:
	}
}

// Started reports whether headers have gone out, after which an error can
// only be sent as an event. Call it after wait.
func (s *sseWriter) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// failed reports whether the client stopped reading; call it after wait.
func (s *sseWriter) failed() bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

// Close writes what is committed, ends the writer goroutine and waits for
// it; no write happens after it returns. The connection's write deadline
// is cleared for the next request on it.
func (s *sseWriter) Close() {
	if !s.closed {
		s.closed = true
		close(s.q)
	}
	<-s.done
	_ = s.rc.SetWriteDeadline(time.Time{})
}
