package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// The Messages and Responses routes are the chat route in two more wire
// formats. Ollama's own conversions (anthropic.FromMessagesRequest,
// openai.FromResponsesRequest) turn a request into the backend's chat
// request; bridgeChat turns that into Warden's chat request, so the one
// chat path scans it (every field the template can render, the canary in
// the system message), estimates, admits and converts it again for the
// backend. Nothing is scanned twice and no field escapes the scan: the
// backend request is rebuilt from the scanned chat request only.

// bridgeChat returns the chat request holding what src holds: its
// messages (images as data URLs, tool calls with their arguments as JSON
// text), tools, output limit, sampling, stop sequences and format. What
// the chat request has no field for (top_k, thinking) is carried over by
// patchBackend.
func bridgeChat(src *api.ChatRequest, model string) chatRequest {
	var r chatRequest
	r.Model = model
	r.Messages = make([]openai.Message, 0, len(src.Messages))
	for _, m := range src.Messages {
		om := openai.Message{Role: m.Role, Reasoning: m.Thinking, ToolCallID: m.ToolCallID}
		if len(m.Images) == 0 {
			om.Content = m.Content
		} else {
			parts := make([]any, 0, len(m.Images)+1)
			if m.Content != "" {
				parts = append(parts, map[string]any{"type": "text", "text": m.Content})
			}
			for _, img := range m.Images {
				parts = append(parts, map[string]any{"type": "image_url",
					"image_url": map[string]any{"url": "data:;base64," + base64.StdEncoding.EncodeToString(img)}})
			}
			om.Content = parts
		}
		if len(m.ToolCalls) > 0 {
			om.ToolCalls = openai.ToToolCalls(m.ToolCalls)
			for i := range om.ToolCalls {
				if a := om.ToolCalls[i].Function.Arguments; a == "" || a == "null" {
					om.ToolCalls[i].Function.Arguments = "{}"
				}
			}
		}
		r.Messages = append(r.Messages, om)
	}
	r.Tools = src.Tools
	if v, ok := src.Options["num_predict"].(int); ok {
		r.MaxTokens = &v
	}
	if v, ok := src.Options["temperature"].(float64); ok {
		r.Temperature = &v
	}
	if v, ok := src.Options["top_p"].(float64); ok {
		r.TopP = &v
	}
	if stops, ok := src.Options["stop"].([]string); ok {
		s := make([]any, len(stops))
		for i, v := range stops {
			s[i] = v
		}
		r.Stop = s
	}
	switch {
	case len(src.Format) == 0:
	case string(src.Format) == `"json"`:
		r.ResponseFormat = &openai.ResponseFormat{Type: "json_object"}
	default:
		r.ResponseFormat = &openai.ResponseFormat{Type: "json_schema", JsonSchema: &openai.JsonSchema{Schema: src.Format}}
	}
	return r
}

// patchBackend sets on the backend request what the chat request could
// not carry from src: top_k, thinking, and the sampling src leaves to the
// model (the chat conversion would set OpenAI's defaults of 1).
func patchBackend(out, src *api.ChatRequest) {
	for _, k := range []string{"temperature", "top_p", "top_k"} {
		if v, ok := src.Options[k]; ok {
			out.Options[k] = v
		} else {
			delete(out.Options, k)
		}
	}
	if src.Think != nil {
		out.Think = src.Think
	}
}

// toolChoiceJSON is a chat tool_choice: a mode, or the one function named.
func toolChoiceJSON(mode, name string) json.RawMessage {
	var v any = mode
	if name != "" {
		v = map[string]any{"type": "function", "function": map[string]string{"name": name}}
	}
	b, _ := json.Marshal(v)
	return b
}

// relaxThinking drops a request for thinking the model cannot do. Agent
// clients ask for it whatever the model (Claude Code sends thinking, Codex
// CLI a reasoning effort), and the backend refuses it for a model without
// the thinking capability; Ollama's own Messages route drops it the same
// way. Only such requests ask the backend for the model's capabilities;
// when it cannot say, the request goes as asked.
func (s *Server) relaxThinking(ctx context.Context, out *api.ChatRequest) {
	if !out.Think.Bool() {
		return
	}
	show, err := s.backend.Show(ctx, &api.ShowRequest{Model: out.Model})
	if err != nil || len(show.Capabilities) == 0 {
		return
	}
	if !slices.Contains(show.Capabilities, "thinking") {
		out.Think = nil
	}
}
