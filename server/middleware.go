package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
)

const requestIDKey = "warden.request_id"

// withRequestID gives every request an id of the server's own making (an
// inbound X-Request-Id is not trusted: it would let clients forge log
// lines), returned in the X-Request-Id header.
func (s *Server) withRequestID(c *gin.Context) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	c.Set(requestIDKey, id)
	c.Header("X-Request-Id", id)
	c.Next()
}

func requestID(c *gin.Context) string {
	return c.GetString(requestIDKey)
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
				c.AbortWithStatusJSON(http.StatusInternalServerError, errInternal.body())
			} else {
				c.Abort()
			}
		}
	}()
	c.Next()
}

// accessLog writes one line per request: no query string, no body.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.log.Info("http",
		"request_id", requestID(c),
		"method", c.Request.Method,
		"path", c.Request.URL.Path,
		"status", c.Writer.Status(),
		"bytes", c.Writer.Size(),
		"dur_ms", float64(time.Since(start).Microseconds())/1000,
		"client_ip", c.ClientIP(),
	)
}

func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
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
