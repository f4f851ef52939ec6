package server

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzMessagesRequest: decoding, validation and conversion of any body
// never panic; every refusal is a client error (400, in the route's
// shape), and a body that passes converts for the backend. Seeds, one
// for every block type and option, are in testdata/fuzz.
func FuzzMessagesRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req messagesRequest
		if err := unmarshalBody(body, &req); err != nil {
			return
		}
		if err := req.check(); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
				t.Fatalf("check failed with a non-client error: %v", err)
			}
			return
		}
		out, err := req.chat.toAPI("m:latest", 16)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("conversion failed with a non-client error: %v", err)
			}
			return
		}
		patchBackend(out, req.backend)
	})
}
