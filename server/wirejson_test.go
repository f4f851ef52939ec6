package server

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// chunkAsMarshal is the text delta as json.Marshal writes the chatChunk.
func chunkAsMarshal(t *testing.T, c chatChunk, text string) []byte {
	t.Helper()
	c.Choices = []chatChunkChoice{{Delta: chatDelta{Content: &text}}}
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var chunkTexts = []string{
	"", "a", "Hello, world.", `"quoted" \back\slash/`, "<b>&amp;</b>", "tab\tnew\nline\rcr\bback\ffeed",
	"\x00\x01\x1f\x7f", "é ü 日本語 🙂", "\u2028\u2029", "\xff\xfe bad \xc3", "\xed\xa0\x80", "a\u00a0b", "</script>",
}

func TestContentChunkAsMarshal(t *testing.T) {
	for _, c := range []chatChunk{
		{ID: "chatcmpl-abc", Object: "chat.completion.chunk", Created: 1796610671, Model: "demo", SystemFingerprint: systemFingerprint},
		{ID: "chatcmpl-<&>", Object: "chat.completion.chunk", Created: -1, Model: "llama3.2:1b \u2028\xff", SystemFingerprint: systemFingerprint},
	} {
		var cc contentChunk
		for _, text := range chunkTexts {
			if got, want := cc.event(&c, text), chunkAsMarshal(t, c, text); !bytes.Equal(got, want) {
				t.Errorf("%q:\n got %s\nwant %s", text, got, want)
			}
		}
	}
}

// FuzzContentChunk: for any text, the framed chunk is json.Marshal's.
func FuzzContentChunk(f *testing.F) {
	for _, text := range chunkTexts {
		f.Add("demo", text)
	}
	f.Fuzz(func(t *testing.T, model, text string) {
		c := chatChunk{ID: "chatcmpl-x", Object: "chat.completion.chunk", Created: 1, Model: model, SystemFingerprint: systemFingerprint}
		var cc contentChunk
		if got, want := cc.event(&c, text), chunkAsMarshal(t, c, text); !bytes.Equal(got, want) {
			t.Fatalf("%q %q:\n got %s\nwant %s", model, text, got, want)
		}
	})
}

// TestJSONValueAsMarshal: appendJSONValue writes what json.Marshal does,
// for values made by hand and for every event of Responses streams.
func TestJSONValueAsMarshal(t *testing.T) {
	values := []any{
		nil, "s", "<&>\u2028\xff", true, false, 0, -12, int64(1 << 62), 1.5, 1e21, 1e-7, float32(0.1), []string{"a"},
		0.0, math.Copysign(0, -1), 1e-6, 9.99e-7, 123456789.0, 1e20, -1e21, 5e-324, math.MaxFloat64, 0.1 + 0.2, 1e-100, 2.5e-10,
		(*int)(nil), new(int), (*bool)(nil), new(bool), map[string]any{"p": &[]int{7}[0], "b": &[]bool{true}[0]},
		map[string]any{}, map[string]any(nil), []any{}, []any(nil), []map[string]any{{"b": 1, "a": nil}},
		map[string]any{"z": 1, "a": []any{"x", 2, map[string]any{"k\xff": "<v>", "K": false}}, "é": 3.25, "m": map[string]any{"": ""}},
		struct {
			A string `json:"a"`
		}{"x"}, json.RawMessage(`{"r":1}`), math.NaN(), map[string]any{"bad": math.Inf(1)}, func() {},
	}
	for _, v := range values {
		sameJSON(t, v)
	}
	for _, text := range chunkTexts {
		temp, topP, maxOut, bg := 0.7, 1e-7, 64, true
		req := openai.ResponsesRequest{Model: "demo", Temperature: &temp, TopP: &topP, MaxOutputTokens: &maxOut, Background: bg, Instructions: text}
		if text == "" {
			req = openai.ResponsesRequest{Model: "demo"}
		}
		conv := openai.NewResponsesStreamConverter("resp_1", "msg_1", "demo", req)
		var evs []openai.ResponsesStreamEvent
		evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Thinking: "hmm " + text}})...)
		evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Content: text}})...)
		call := api.ToolCall{ID: "call_1", Function: api.ToolCallFunction{Name: "f" + text, Arguments: api.NewToolCallFunctionArguments()}}
		call.Function.Arguments.Set("q", text)
		evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", ToolCalls: []api.ToolCall{call}}})...)
		evs = append(evs, conv.Process(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: 2}})...)
		if len(evs) < 8 {
			t.Fatalf("%d events", len(evs))
		}
		for _, ev := range evs {
			sameJSON(t, ev.Data)
		}
	}
}

// TestAnthropicDeltaAsMarshal: the content block deltas appendJSONValue
// writes itself are json.Marshal's, for every field; a field upstream
// adds fails the test until the encoder writes it too.
func TestAnthropicDeltaAsMarshal(t *testing.T) {
	if n, m := reflect.TypeFor[anthropic.ContentBlockDeltaEvent]().NumField(), reflect.TypeFor[anthropic.Delta]().NumField(); n != 3 || m != 5 {
		t.Fatalf("anthropic.ContentBlockDeltaEvent has %d fields, its Delta %d: appendJSONValue writes 3 and 5", n, m)
	}
	for _, text := range chunkTexts {
		sameJSON(t, anthropic.ContentBlockDeltaEvent{Type: "content_block_delta", Index: 2, Delta: anthropic.Delta{Type: "text_delta", Text: text}})
		sameJSON(t, anthropic.ContentBlockDeltaEvent{Type: text, Index: -1, Delta: anthropic.Delta{Type: text, Text: text, PartialJSON: text, Thinking: text, Signature: text}})
	}
	conv := anthropic.NewStreamConverter("msg_1", "demo", 3)
	var evs []anthropic.StreamEvent
	for _, text := range chunkTexts {
		evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Thinking: text}})...)
		evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Content: text}})...)
	}
	call := api.ToolCall{ID: "toolu_1", Function: api.ToolCallFunction{Name: "f", Arguments: api.NewToolCallFunctionArguments()}}
	call.Function.Arguments.Set("q", "<x>")
	evs = append(evs, conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", ToolCalls: []api.ToolCall{call}}})...)
	evs = append(evs, conv.Process(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: 2}})...)
	deltas := 0
	for _, ev := range evs {
		if _, ok := ev.Data.(anthropic.ContentBlockDeltaEvent); ok {
			deltas++
		}
		sameJSON(t, ev.Data)
	}
	if deltas < len(chunkTexts) {
		t.Errorf("%d content block deltas in the stream, want at least %d", deltas, len(chunkTexts))
	}
}

func sameJSON(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, gotErr := appendJSONValue([]byte("prefix"), v)
	if (gotErr != nil) != (wantErr != nil) || gotErr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Errorf("%#v:\n got %s (%v)\nwant prefix%s (%v)", v, got, gotErr, want, wantErr)
	}
}

// FuzzJSONValue: for any string, float and int, and a map of them,
// appendJSONValue writes json.Marshal's bytes.
func FuzzJSONValue(f *testing.F) {
	f.Add("k", "<v>", 1.5, int64(-3))
	f.Add("\xff", "\u2028", 1e-7, int64(1<<62))
	f.Add("", "", 1e21, int64(0))
	f.Fuzz(func(t *testing.T, k, s string, x float64, n int64) {
		sameJSON(t, x)
		sameJSON(t, map[string]any{k: s, s: []any{x, n, int(n), k}, "n": nil})
	})
}

// TestAnswerAsMarshal: appendAnswer writes json.Marshal's bytes, or
// leaves the answer to it.
func TestAnswerAsMarshal(t *testing.T) {
	// A field added to the wire types must be written by appendAnswer too.
	for typ, n := range map[reflect.Type]int{reflect.TypeFor[chatCompletion](): 7, reflect.TypeFor[chatChoice](): 4,
		reflect.TypeFor[chatMessage](): 4, reflect.TypeFor[usage](): 3, reflect.TypeFor[chatChunk](): 7, reflect.TypeFor[chatChunkChoice](): 4, reflect.TypeFor[chatDelta](): 3} {
		if typ.NumField() != n {
			t.Errorf("%v has %d fields; appendAnswer and contentChunk write %d", typ, typ.NumField(), n)
		}
	}
	text := "<b>\u2028 \xff \"hi\"</b>"
	empty := ""
	refusal := "no"
	for _, c := range []struct {
		v      any
		direct bool
	}{
		{chatCompletion{ID: "chatcmpl-1", Object: "chat.completion", Created: 1796610671, Model: "demo", SystemFingerprint: systemFingerprint,
			Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Content: &text}, FinishReason: "stop"}}, Usage: usage{3, 2, 5}}, true},
		{chatCompletion{ID: "<&>", Model: "\xff", Created: -5, Choices: []chatChoice{{Index: 3, Message: chatMessage{Content: &empty}, FinishReason: "length"}}}, true},
		{chatCompletion{Choices: []chatChoice{{Message: chatMessage{Role: "assistant"}, FinishReason: "tool_calls"}}}, true},
		{chatCompletion{Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Refusal: &refusal}}}}, false},
		{chatCompletion{Choices: []chatChoice{{Logprobs: []any{}}}}, false},
		{chatCompletion{}, false},
		{textCompletion{ID: "cmpl-1"}, false},
	} {
		got, ok := appendAnswer(nil, c.v)
		if ok != c.direct {
			t.Errorf("%+v: direct %v, want %v", c.v, ok, c.direct)
		}
		if want, _ := json.Marshal(c.v); ok && !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %s\nwant %s", c.v, got, want)
		}
	}
}
