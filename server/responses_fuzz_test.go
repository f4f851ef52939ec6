package server

import "testing"

// FuzzResponsesRequest: as FuzzMessagesRequest, for the Responses body.
func FuzzResponsesRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req responsesRequest
		fuzzAgentBody(t, body, &req, &req.chat, &req.backend)
	})
}
