package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
	"unicode/utf8"
)

// decodeAsDecoder is unmarshalBody as it was with a json.Decoder: one
// value, then io.EOF. unmarshalBody decodes with json.Unmarshal and must
// give the same answers, errors included.
func decodeAsDecoder(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "The request body is empty; expected a JSON object."}
	}
	if !utf8.Valid(body) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "The request body is not valid UTF-8."}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "Malformed JSON: unexpected data after the top-level value."}
	}
	return nil
}

// decodeTargets are the request types the routes decode.
var decodeTargets = []func() any{
	func() any { return new(chatRequest) },
	func() any { return new(messagesRequest) },
	func() any { return new(responsesRequest) },
	func() any { return new(completionRequest) },
	func() any { return new(embeddingRequest) },
	func() any { return new(map[string]any) },
}

// sameAsDecoder fails t when unmarshalBody and decodeAsDecoder disagree
// on body, for every decodeTargets type.
func sameAsDecoder(t *testing.T, body []byte) {
	t.Helper()
	for _, target := range decodeTargets {
		got, want := target(), target()
		gotErr, wantErr := unmarshalBody(body, got), decodeAsDecoder(body, want)
		if !reflect.DeepEqual(gotErr, wantErr) {
			t.Fatalf("%T %q: error %v, want %v", got, body, gotErr, wantErr)
		}
		if wantErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%T %q: decoded %+v, want %+v", got, body, got, want)
		}
	}
}

var decodeCases = []string{
	``, ` `, "\n\t", `{}`, `[]`, `null`, `123`, `"x"`, `true`, `tru`, `nul`, `1e`, `-`,
	`{`, `{"model":`, `{"model":"demo"`, `{"model":"demo",`, `{"model":"de`, `{"model":"demo"}`,
	`{"model":"demo"} `, `{"model":"demo"}x`, `{"model":"demo"} {}`, `{"model":"demo"}}`, `{"model":"demo"}]`,
	`{"model":1}`, `{"model":1}x`, `{"model":1} {`, `123abc`, `123 456`, `"a" "b"`, `[1,2]x`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":"8"}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8.5}`,
	`{"model":"m","messages":{"role":"user"}}`, `{"model":"m","messages":[1]}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":"yes"} trailing`,
	`{"model":"m","input":"hi","max_output_tokens":-1}`, `{"model":"m","input":[{"type":"message","role":"user","content":"hi"}]}`,
	`{"model":"m","input":[{"type":"message","content":5}]}`, `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`,
	`{"model":"m","system":[{"type":"text","text":"s"}],"max_tokens":1,"messages":[],"thinking":{"type":"enabled","budget_tokens":5}}`,
	`{"a":"\u00e9\ud83d\ude00"}`, `{"a":"\ud800"}`, `{"a":1,"a":2}`, `{"A":1}`, `{"model":"m"` + "\x00" + `}`,
	"{\"model\":\"\xff\"}", `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":["string","null"]}}}}}]}`,
	`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"b":1,"a":2}}}]}]}`,
	`{"model":"m","keep_alive":"5m","think":"high"}`, `{"model":"m","think":"very"}`,
}

func TestUnmarshalBodyAsDecoder(t *testing.T) {
	for _, body := range decodeCases {
		sameAsDecoder(t, []byte(body))
	}
}

// FuzzUnmarshalBodyAsDecoder: for any body, unmarshalBody answers as a
// json.Decoder reading one value then io.EOF did.
func FuzzUnmarshalBodyAsDecoder(f *testing.F) {
	addSeeds(f, "*.in.json")
	for _, body := range decodeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameAsDecoder(t, body) })
}
