package server

import (
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds the golden request inputs as seeds beside the corpus that
// go test keeps in testdata/fuzz.
func addSeeds(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata/convert", pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":"data:;base64,@@"}]}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":"{"}}]}]}`))
	f.Add([]byte("{\"model\":\"\xff\"}"))
	f.Add([]byte(`{"model":"m","prompt":[null],"input":[{}],"tool_choice":{"type":"function"}}`))
}

// FuzzChatRequest: decoding, validation and conversion of any body never
// panic, and a body that passes validation converts.
func FuzzChatRequest(f *testing.F) {
	addSeeds(f, "chat_*.in.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		var req chatRequest
		if unmarshalBody(body, &req) != nil || req.validate() != nil {
			return
		}
		if _, err := req.toAPI("m:latest", 16); err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("conversion failed with a non-client error: %v", err)
			}
		}
	})
}

func FuzzCompletionRequest(f *testing.F) {
	addSeeds(f, "completion_*.in.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		var req completionRequest
		if unmarshalBody(body, &req) != nil {
			return
		}
		prompt, err := req.validate()
		if err != nil {
			return
		}
		if _, err := req.toAPI("m:latest", prompt, 16); err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("conversion failed with a non-client error: %v", err)
			}
		}
	})
}

func FuzzEmbeddingRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":3}`))
	f.Add([]byte(`{"model":"m","input":[[1,2]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req embeddingRequest
		if unmarshalBody(body, &req) != nil {
			return
		}
		in, err := req.inputs()
		if err == nil && len(in) == 0 {
			t.Fatal("valid request with no inputs")
		}
	})
}
