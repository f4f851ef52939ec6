package server

import (
	"errors"
	"net/http"
	"testing"
)

// messagesSeeds are Messages bodies covering every block type and option.
var messagesSeeds = []string{
	`{"model":"m","max_tokens":8,"system":"s","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","max_tokens":8,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}`,
	`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"q":[1,"x",{"k":null}]}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"r"}],"is_error":true}]}],"tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"array"}}}}],"tool_choice":{"type":"tool","name":"f"}}`,
	`{"model":"m","max_tokens":8,"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["x"],"thinking":{"type":"enabled","budget_tokens":1024},"metadata":{"user_id":"u"},"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f"}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"a"}]}]}`,
	`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"@@"}}]}]}`,
	`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[null,{"type":5}]}],"tools":[{"name":"f","input_schema":[]}]}`,
}

// FuzzMessagesRequest: decoding, validation and conversion of any body
// never panic; every refusal is a client error (400, in the route's
// shape), and a body that passes converts for the backend.
func FuzzMessagesRequest(f *testing.F) {
	for _, s := range messagesSeeds {
		f.Add([]byte(s))
	}
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
