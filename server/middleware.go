package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// reqState is what the middleware learns about a request once, for
// everything after it: one context entry, and the client address and the
// key's merged limits worked out once rather than at every use.
type reqState struct {
	id        string
	ip        string          // c.ClientIP()
	addr      netip.Addr      // ip parsed, unmapped; zero when it is none
	principal *keys.Principal // set by authenticate
	limits    keys.Limits     // the principal's, merged over the defaults
	trail     *trail          // set by auditRequest
	// rateDue: the request was counted against its key's quota and its
	// x-ratelimit-* headers are not set yet (see lateRateHeaders).
	rateDue bool

	// The homes of trail and of the body's paceReader: allocated with
	// the state, not each on its own.
	trailOwn trail
	pace     paceReader
	idHeader [1]string // X-Request-Id's value
}

// reqStateKey is the gin key of the request's state: a type of its own,
// which no other package can use, and cheaper to hash than a string (the
// state is looked up a few dozen times a request).
type reqStateKey struct{}

// stateOf is the request's state, or nil outside the middleware chain.
func stateOf(c *gin.Context) *reqState {
	v, _ := c.Get(reqStateKey{})
	st, _ := v.(*reqState)
	return st
}

// withRequestID gives every request an id of the server's own making (an
// inbound X-Request-Id is not trusted: it would let clients forge log
// lines), returned in the X-Request-Id header.
func (s *Server) withRequestID(c *gin.Context) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	st := &reqState{id: hex.EncodeToString(b[:]), ip: c.ClientIP()}
	st.addr = parseAddr(st.ip)
	c.Set(reqStateKey{}, st)
	st.idHeader[0] = st.id
	c.Writer.Header()["X-Request-Id"] = st.idHeader[:] // the key is canonical; no slice of its own
	c.Next()
}

func requestID(c *gin.Context) string {
	if st := stateOf(c); st != nil {
		return st.id
	}
	return ""
}

// clientIP is c.ClientIP(), worked out once per request.
func clientIP(c *gin.Context) string {
	if st := stateOf(c); st != nil {
		return st.ip
	}
	return c.ClientIP()
}

// recoverPanic turns a panic into a 500 and a log line with the stack,
// unless the response has started, in which case the stream just ends.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.Error("panic", "request_id", requestID(c), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				s.lateRateHeaders(c)
				c.AbortWithStatusJSON(http.StatusInternalServerError, errorPayload(c, errInternal))
			} else {
				c.Abort()
			}
		}
	}()
	c.Next()
}

// accessLog writes one line per request: no query string, no body.
// Refused keys (401) are logged at debug: the audit trail counts them per
// client IP and minute, and a flood of bad keys must not flood the log.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelInfo
	if c.Writer.Status() == http.StatusUnauthorized {
		level = slog.LevelDebug
	}
	ctx := c.Request.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	// Typed attributes: no boxing of the values per request.
	s.log.LogAttrs(ctx, level, "http",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", c.Writer.Status()),
		slog.Int("bytes", c.Writer.Size()),
		slog.Float64("dur_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("client_ip", clientIP(c)),
	)
}

// securityHeaderValues go on every response. Their value slices are
// shared by all responses, which costs no allocation per request: net/http
// only reads them, and Header.Set and Add replace a value slice (Add's
// append copies one at its capacity) rather than writing into it.
// They are a list, not a map: ranging over a map costs a request more
// than five assignments.
var securityHeaderValues = [...]struct {
	key   string
	value []string
}{
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"Content-Security-Policy", []string{"default-src 'none'; frame-ancestors 'none'"}},
	{"Cache-Control", []string{"no-store"}},
}

func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	for _, kv := range &securityHeaderValues {
		h[kv.key] = kv.value
	}
	c.Next()
}

// limitBody caps the request body; reading past the cap fails with
// *http.MaxBytesError, which decodeBody maps to 413.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		s.writeError(c, errTooLarge(s.cfg.MaxBodyBytes))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	c.Next()
}

func errTooLarge(limit int64) *apiError {
	return &apiError{
		Status:  http.StatusRequestEntityTooLarge,
		Type:    typeInvalidRequest,
		Code:    codeBodyTooLarge,
		Message: fmt.Sprintf("Request body exceeds the limit of %d bytes.", limit),
	}
}

// bodyBudget counts the request bodies in flight per client IP, by their
// declared length (or the body cap when none is declared), before they are
// read: half-sent bodies cannot hold more than the budget's memory.
type bodyBudget struct {
	limit int64
	mu    sync.Mutex
	inUse map[string]int64
}

func newBodyBudget(limit int64) *bodyBudget {
	return &bodyBudget{limit: limit, inUse: map[string]int64{}}
}

// take reserves n bytes for ip, or reports false when that would pass the
// budget. A single body up to the budget is always let through when the
// IP has nothing else in flight.
func (b *bodyBudget) take(ip string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	used := b.inUse[ip]
	if used > 0 && used+n > b.limit {
		return false
	}
	b.inUse[ip] = used + n
	return true
}

func (b *bodyBudget) give(ip string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inUse[ip] -= n; b.inUse[ip] <= 0 {
		delete(b.inUse, ip)
	}
}

// inFlight is the total reserved (the metric warden_request_body_bytes_in_flight).
func (b *bodyBudget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, v := range b.inUse {
		n += v
	}
	return n
}

var errBodiesInFlight = &apiError{
	Status:     http.StatusTooManyRequests,
	Type:       "requests",
	Code:       "too_many_bodies_in_flight",
	Message:    "Too many request bodies are being sent from your address at once; retry when they are done.",
	RetryAfter: 1,
}

var errSlowBody = &apiError{
	Status:  http.StatusRequestTimeout,
	Type:    typeInvalidRequest,
	Code:    "request_timeout",
	Message: "The request body arrived too slowly.",
}

// paceBody holds request bodies to the per-IP in-flight budget (the
// reservation lasts until the request is answered: the body's decoded form
// lives that long) and to a minimum rate: after the grace period a body
// must keep arriving at MinBodyRate bytes a second, or the read fails and
// the request gets 408.
func (s *Server) paceBody(c *gin.Context) {
	if c.Request.Body == nil || c.Request.Body == http.NoBody || c.Request.ContentLength == 0 {
		c.Next()
		return
	}
	n := c.Request.ContentLength
	if n < 0 || n > s.cfg.MaxBodyBytes {
		n = s.cfg.MaxBodyBytes
	}
	ip := clientIP(c)
	if !s.bodies.take(ip, n) {
		// Close rather than read the unread body to keep the connection.
		c.Header("Connection", "close")
		s.refusedBeforeAuth(c)
		s.writeError(c, errBodiesInFlight)
		return
	}
	defer s.bodies.give(ip, n)
	pr := &stateOf(c).pace
	*pr = paceReader{
		r:      c.Request.Body,
		rc:     *http.NewResponseController(c.Writer), // a copy: no allocation
		header: c.Writer.Header(),
		start:  time.Now(),
		grace:  s.cfg.BodyGrace,
		rate:   s.cfg.MinBodyRate,
	}
	c.Request.Body = pr
	defer pr.clear()
	c.Next()
}

// paceReader sets the connection's read deadline before each read so that
// the body arrives at rate bytes a second after grace.
type paceReader struct {
	r      io.ReadCloser
	rc     http.ResponseController
	header http.Header // the response's
	start  time.Time
	grace  time.Duration
	rate   int64
	n      int64
	done   bool
}

func (p *paceReader) Read(b []byte) (int, error) {
	if p.done {
		return p.r.Read(b)
	}
	due := p.start.Add(p.grace + time.Duration(p.n)*time.Second/time.Duration(p.rate))
	_ = p.rc.SetReadDeadline(due) // unsupported (a test recorder): no pace
	n, err := p.r.Read(b)
	p.n += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection is dropped after the 408: its unread rest
		// cannot be skipped.
		p.done = true
		p.header.Set("Connection", "close")
		return n, errSlowBody
	}
	if err != nil {
		// The body is over: a deadline left on the connection would cut
		// the server's wait for the client going away.
		p.clear()
	}
	return n, err
}

func (p *paceReader) Close() error { return p.r.Close() }

// clear removes the read deadline once the body is read or the request
// is over.
func (p *paceReader) clear() {
	if !p.done {
		p.done = true
		_ = p.rc.SetReadDeadline(time.Time{})
	}
}

// keyBodies counts each key's requests with a body in flight.
type keyBodies struct {
	mu    sync.Mutex
	inUse map[string]int64
}

func (k *keyBodies) take(key string, limit int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inUse == nil {
		k.inUse = map[string]int64{}
	}
	if k.inUse[key] >= limit {
		return false
	}
	k.inUse[key]++
	return true
}

func (k *keyBodies) give(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inUse[key]--; k.inUse[key] <= 0 {
		delete(k.inUse, key)
	}
}

// holdKeyBodies counts a request with a body against its key's
// concurrency limit before the body is read: a key cannot hold more
// half-sent bodies than it may run requests (a key with no such limit is
// not counted). Admission counts the requests it admits again, among
// these.
func (s *Server) holdKeyBodies(c *gin.Context) {
	if c.Request.ContentLength == 0 || c.Request.Body == nil || c.Request.Body == http.NoBody {
		c.Next()
		return
	}
	limit := s.limits(c).Concurrency
	if limit <= 0 {
		c.Next() // no concurrency limit: nothing to hold the bodies to
		return
	}
	p := principal(c)
	if !s.keyBodies.take(p.KeyID, limit) {
		c.Header("Connection", "close") // rather than read the unread body
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.rateLimited.WithLabelValues(quota.LimitConcurrency).Inc()
		}
		s.writeError(c, &apiError{
			Status:     http.StatusTooManyRequests,
			Type:       "requests",
			Code:       "rate_limit_exceeded",
			Message:    fmt.Sprintf("This key already has %d requests in flight, its concurrency limit; retry when one is done.", limit),
			RetryAfter: 1,
		})
		return
	}
	defer s.keyBodies.give(p.KeyID)
	c.Next()
}
