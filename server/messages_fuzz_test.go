package server

import (
	"errors"
	"net/http"
	"testing"

	"github.com/ollama/ollama/api"
)

// FuzzMessagesRequest: decoding, validation and conversion of any body
// never panic; every refusal is a client error (400, in the route's
// shape), and a body that passes converts for the backend. Seeds, one
// for every block type and option, are in testdata/fuzz.
func FuzzMessagesRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req messagesRequest
		fuzzAgentBody(t, body, &req, &req.chat, &req.backend)
	})
}

// fuzzAgentBody is the body of the Messages and Responses fuzz targets:
// req decodes body and checks it, leaving the chat request it bridges to
// in *chat and Ollama's own conversion in *backend.
func fuzzAgentBody(t *testing.T, body []byte, req interface{ check() error }, chat *chatRequest, backend **api.ChatRequest) {
	if err := unmarshalBody(body, req); err != nil {
		return
	}
	if err := req.check(); err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Fatalf("check failed with a non-client error: %v", err)
		}
		return
	}
	out, err := chat.toAPI("m:latest", 16)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			t.Fatalf("conversion failed with a non-client error: %v", err)
		}
		return
	}
	patchBackend(out, *backend)
}
