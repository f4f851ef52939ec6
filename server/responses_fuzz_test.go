package server

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzResponsesRequest: as FuzzMessagesRequest, for the Responses body.
func FuzzResponsesRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req responsesRequest
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
