package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/anthropic"
)

// Errors on the Anthropic routes (/v1/messages and what is under it) use
// Anthropic's shape, whichever step refused the request: the body limit,
// load shedding, authentication, scope, quota, or the handler. The shape
// follows the path, so the middleware that runs before the route group's
// handlers answers in it too.

// messagesPrefix is the path of the Anthropic routes.
const messagesPrefix = "/v1/messages"

// anthropicPath reports whether the request is for an Anthropic route.
func anthropicPath(c *gin.Context) bool {
	p := c.Request.URL.Path
	return p == messagesPrefix || strings.HasPrefix(p, messagesPrefix+"/")
}

// errorPayload is the body of an error answer in the request's API's shape.
func errorPayload(c *gin.Context, ae *apiError) any {
	if anthropicPath(c) {
		return anthropicError(c, ae)
	}
	return ae.body()
}

// anthropicError is ae in Anthropic's shape:
// {"type":"error","error":{"type":...,"message":...},"request_id":...}.
func anthropicError(c *gin.Context, ae *apiError) anthropic.ErrorResponse {
	return anthropic.ErrorResponse{
		Type:      "error",
		Error:     anthropic.Error{Type: anthropicErrorType(ae.Status), Message: ae.Message},
		RequestID: requestID(c),
	}
}

// anthropicErrorType is Anthropic's error type for a status. Warden's
// 503 (backend down, shedding, audit trail unwritable, shutting down) is
// Anthropic's overloaded_error, which its SDKs retry.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}
