package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/runtime/ollama"
)

// apiError is an error the client may see: an HTTP status and an
// OpenAI-shaped body. Every other error is mapped to one by toAPIError and
// its cause goes only to the log.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
	// RetryAfter, in seconds, is sent as the Retry-After header when > 0.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

// errorBody is the wire form: {"error":{"message","type","param","code"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	d := errorDetail{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		d.Param = &e.Param
	}
	if e.Code != "" {
		d.Code = &e.Code
	}
	return errorBody{Error: d}
}

// Error types and codes as OpenAI uses them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"

	codeModelNotFound   = "model_not_found"
	codeContextExceeded = "context_length_exceeded"
	codeBodyTooLarge    = "request_too_large"
	codeUnavailable     = "backend_unavailable"
	codeTimeout         = "timeout"
)

// statusClientClosed records a request whose client left before its
// answer was delivered.
const statusClientClosed = 499

// invalidf reports a 400 about the named request field.
func invalidf(param, format string, args ...any) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    typeInvalidRequest,
		Code:    "invalid_value",
		Param:   param,
		Message: fmt.Sprintf(format, args...),
	}
}

// missing reports a required field that is absent.
func missing(param string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    typeInvalidRequest,
		Code:    "missing_required_parameter",
		Param:   param,
		Message: fmt.Sprintf("you must provide a '%s' parameter", param),
	}
}

func modelNotFound(name string) *apiError {
	return &apiError{
		Status:  http.StatusNotFound,
		Type:    typeInvalidRequest,
		Code:    codeModelNotFound,
		Param:   "model",
		Message: fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", name),
	}
}

var (
	errUnavailable = &apiError{
		Status:     http.StatusServiceUnavailable,
		Type:       typeServer,
		Code:       codeUnavailable,
		Message:    "The model backend is unavailable; retry shortly.",
		RetryAfter: 1,
	}
	errTimeout = &apiError{
		Status:  http.StatusGatewayTimeout,
		Type:    typeServer,
		Code:    codeTimeout,
		Message: "The request took longer than the server's request deadline.",
	}
	// errClientGone is how a request the client abandoned is recorded
	// (nginx's 499): it left, or stopped reading its stream. Nobody reads
	// the body.
	errClientGone = &apiError{
		Status:  statusClientClosed,
		Type:    typeInvalidRequest,
		Code:    "client_closed_request",
		Message: "The client closed the request.",
	}
	// errDrained ends the requests still in flight when the server's drain
	// timeout has passed.
	errDrained = &apiError{
		Status:     http.StatusServiceUnavailable,
		Type:       typeServer,
		Code:       "server_shutting_down",
		Message:    "The server is shutting down; retry shortly.",
		RetryAfter: 1,
	}
	errInternal = &apiError{
		Status:  http.StatusInternalServerError,
		Type:    typeServer,
		Message: "The server had an error while processing your request.",
	}
)

// toAPIError maps any error to what the client may see. It is the one place
// where statuses are chosen for errors that did not start as an apiError.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var se api.StatusError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return errTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, errNotReading):
		return errClientGone
	case errors.Is(err, ollama.ErrUnavailable), errors.Is(err, ollama.ErrStopped):
		return errUnavailable
	case errors.As(err, &se):
		return backendStatus(se)
	}
	return errInternal
}

// backendStatus maps an error the backend answered with. Its 4xx messages
// are about the request and safe to show; 5xx messages may carry internal
// detail and are replaced.
func backendStatus(se api.StatusError) *apiError {
	msg := se.ErrorMessage
	switch {
	case strings.Contains(msg, "exceeds the context length"):
		return &apiError{
			Status:  http.StatusBadRequest,
			Type:    typeInvalidRequest,
			Code:    codeContextExceeded,
			Param:   "messages",
			Message: "This model's maximum context length was exceeded by the input; shorten the prompt.",
		}
	case se.StatusCode == http.StatusNotFound:
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: codeModelNotFound, Param: "model", Message: "The model does not exist or you do not have access to it."}
	case se.StatusCode == http.StatusServiceUnavailable || se.StatusCode == http.StatusTooManyRequests:
		return errUnavailable
	case se.StatusCode >= 500 && runnerDied(msg):
		return errUnavailable
	case se.StatusCode >= 400 && se.StatusCode < 500:
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: msg}
	}
	return errInternal
}

// runnerDied reports whether a backend error says its model runner died
// (killed, crashed, out of memory) while answering: the backend is
// restarting it, and a retry may succeed.
func runnerDied(msg string) bool {
	for _, s := range []string{
		"runner process has terminated",
		"runner process no longer running",
		"error was encountered while running the model",
		"llama runner",
		"unexpected EOF",
		"connection reset",
		"connection refused",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// writeError sends err to the client as JSON and logs its cause.
func (s *Server) writeError(c *gin.Context, err error) {
	ae := toAPIError(err)
	s.logError(c, err, ae)
	if s.complete(c, outcome{status: ae.Status, response: ae.Message}) != nil {
		ae = errAuditUnavailable
	}
	if ae.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	s.lateRateHeaders(c)
	c.AbortWithStatusJSON(ae.Status, errorPayload(c, ae))
}

func (s *Server) logError(c *gin.Context, err error, ae *apiError) {
	if ae == errClientGone {
		return // the client went away; nothing to report
	}
	level := slog.LevelInfo
	switch {
	case ae.Status >= 500:
		// A fault that fails every request (the audit trail's disk full)
		// is logged once per interval with its count.
		s.repeated.Log(c.Request.Context(), s.log, slog.LevelError, "request failed",
			"request_id", requestID(c), "status", ae.Status, "code", ae.Code, "err", err)
		return
	case ae.Status == http.StatusUnauthorized:
		level = slog.LevelDebug // refused keys are counted by the audit trail
	}
	s.log.Log(c.Request.Context(), level, "request failed",
		"request_id", requestID(c), "status", ae.Status, "code", ae.Code, "err", err)
}
