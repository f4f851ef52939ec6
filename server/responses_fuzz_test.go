package server

import (
	"errors"
	"net/http"
	"testing"
)

// responsesSeeds are Responses bodies covering every item type and option.
var responsesSeeds = []string{
	`{"model":"m","input":"hi","instructions":"s","store":true,"max_output_tokens":8}`,
	`{"model":"m","input":[{"role":"developer","content":"d"},{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","detail":"auto","image_url":"data:image/png;base64,iVBORw0KGgo="}]}]}`,
	`{"model":"m","input":[{"role":"user","content":"hi"},{"type":"reasoning","summary":[],"encrypted_content":"r"},{"type":"function_call","call_id":"c1","name":"f","arguments":"{\"q\":[1,{\"k\":null}]}"},{"type":"function_call_output","call_id":"c1","output":"o"},{"role":"assistant","content":[{"type":"output_text","text":"x"}]}],"tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"}}`,
	`{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"object"}}},"reasoning":{"effort":"minimal"},"temperature":0.2,"top_p":0.5,"stream":true,"user":"u","safety_identifier":"s"}`,
	`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":""},{"type":"function_call_output","call_id":"c","output":""}]}`,
	`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png"}]}],"previous_response_id":null,"conversation":null}`,
	`{"model":"m","input":[{}],"tool_choice":5,"text":{"format":{"type":"json_schema"}}}`,
}

// FuzzResponsesRequest: as FuzzMessagesRequest, for the Responses body.
func FuzzResponsesRequest(f *testing.F) {
	for _, s := range responsesSeeds {
		f.Add([]byte(s))
	}
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
