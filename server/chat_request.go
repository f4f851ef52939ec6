package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// chatRequest is the body of POST /v1/chat/completions: upstream Ollama's
// OpenAI request type plus the fields it ignores but Warden must check.
type chatRequest struct {
	openai.ChatCompletionRequest
	N                   *int            `json:"n"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	User                string          `json:"user"`
}

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

func (r *chatRequest) modelName() string { return r.Model }

func (r *chatRequest) bodyUser() string { return r.User }

func (r *chatRequest) check() error { return r.validate() }

// validate checks the request and names the first bad field.
func (r *chatRequest) validate() error {
	if r.Model == "" {
		return missing("model")
	}
	if len(r.Messages) == 0 {
		return missing("messages")
	}
	for i, m := range r.Messages {
		if m.Role == "" {
			return missing(messageField(i) + ".role")
		}
		if !chatRoles[m.Role] {
			field := messageField(i)
			return invalidf(field+".role", "Invalid value for '%s.role': '%s'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.", field, m.Role)
		}
		if err := validateContent(i, m); err != nil {
			return err
		}
	}
	if err := validateSampling(r.Temperature, r.TopP, r.N); err != nil {
		return err
	}
	if err := validatePenalty("presence_penalty", r.PresencePenalty); err != nil {
		return err
	}
	if err := validatePenalty("frequency_penalty", r.FrequencyPenalty); err != nil {
		return err
	}
	for _, mt := range []struct {
		name string
		v    *int
	}{{"max_tokens", r.MaxTokens}, {"max_completion_tokens", r.MaxCompletionTokens}} {
		if mt.v != nil && *mt.v < 1 {
			return invalidf(mt.name, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", mt.name, *mt.v)
		}
	}
	if r.TopLogprobs < 0 || r.TopLogprobs > 20 {
		return invalidf("top_logprobs", "Invalid 'top_logprobs': expected a value between 0 and 20, got %d.", r.TopLogprobs)
	}
	if err := validateStop(r.Stop); err != nil {
		return err
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "json_object":
		case "json_schema":
			if rf.JsonSchema == nil || len(rf.JsonSchema.Schema) == 0 {
				return missing("response_format.json_schema.schema")
			}
		default:
			return invalidf("response_format.type", "Invalid value for 'response_format.type': '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.", rf.Type)
		}
	}
	for i, t := range r.Tools {
		if t.Type != "function" || t.Function.Name == "" {
			return invalidf(indexed("tools", i), "Invalid tool at 'tools[%d]': expected type 'function' with a function name.", i)
		}
	}
	_, err := r.toolChoice()
	return err
}

// messageField names messages[i] in an error; it is made only for one.
func messageField(i int) string { return indexed("messages", i) }

// indexed names the element i of the field name: "messages[2]".
func indexed(name string, i int) string { return name + "[" + strconv.Itoa(i) + "]" }

// validateContent checks the content of messages[i].
func validateContent(i int, m openai.Message) error {
	switch content := m.Content.(type) {
	case string:
		if len(m.ToolCalls) == 0 {
			return nil // the common case: nothing more to check
		}
	case nil:
		if m.Role != "assistant" || len(m.ToolCalls) == 0 {
			return missing(messageField(i) + ".content")
		}
	case []any:
		field := messageField(i)
		for j, p := range content {
			pf := indexed(field+".content", j)
			part, ok := p.(map[string]any)
			if !ok {
				return invalidf(pf, "Invalid type for '%s': expected an object.", pf)
			}
			switch part["type"] {
			case "text":
				if _, ok := part["text"].(string); !ok {
					return missing(pf + ".text")
				}
			case "image_url":
				if m.Role != "user" {
					return invalidf(pf+".type", "Image content parts are only allowed in user messages.")
				}
			default:
				return invalidf(pf+".type", "Invalid value for '%s.type': supported values are 'text' and 'image_url'.", pf)
			}
		}
	default:
		field := messageField(i)
		return invalidf(field+".content", "Invalid type for '%s.content': expected a string or an array of content parts.", field)
	}
	for j, tc := range m.ToolCalls {
		if _, err := scanArguments(func(s string) string { return s }, tc.Function.Arguments); err != nil {
			return badArguments(fmt.Sprintf("%s.tool_calls[%d].function.arguments", messageField(i), j))
		}
	}
	return nil
}

func validateSampling(temperature, topP *float64, n *int) error {
	if t := temperature; t != nil && (*t < 0 || *t > 2) {
		return invalidf("temperature", "Invalid 'temperature': expected a value between 0 and 2, got %g.", *t)
	}
	if p := topP; p != nil && (*p < 0 || *p > 1) {
		return invalidf("top_p", "Invalid 'top_p': expected a value between 0 and 1, got %g.", *p)
	}
	if n != nil && *n != 1 {
		return invalidf("n", "Invalid 'n': only n = 1 is supported, got %d.", *n)
	}
	return nil
}

func validatePenalty(name string, v *float64) error {
	if v != nil && (*v < -2 || *v > 2) {
		return invalidf(name, "Invalid '%s': expected a value between -2 and 2, got %g.", name, *v)
	}
	return nil
}

func validateStop(stop any) error {
	switch s := stop.(type) {
	case nil, string:
	case []any:
		if len(s) > 4 {
			return invalidf("stop", "Invalid 'stop': at most 4 stop sequences are allowed.")
		}
		for _, v := range s {
			if _, ok := v.(string); !ok {
				return invalidf("stop", "Invalid 'stop': expected a string or an array of strings.")
			}
		}
	default:
		return invalidf("stop", "Invalid 'stop': expected a string or an array of strings.")
	}
	return nil
}

// toolChoice interprets tool_choice: "" (absent), "none", "auto",
// "required", or a function name when the choice names one.
func (r *chatRequest) toolChoice() (string, error) {
	if len(r.ToolChoice) == 0 || string(r.ToolChoice) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(r.ToolChoice, &s) == nil {
		switch s {
		case "none", "auto", "required":
			return s, nil
		}
		return "", invalidf("tool_choice", "Invalid value for 'tool_choice': '%s'. Supported values are: 'none', 'auto' and 'required', or a function.", s)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(r.ToolChoice, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return "", invalidf("tool_choice", "Invalid 'tool_choice': expected a string or {\"type\": \"function\", \"function\": {\"name\": ...}}.")
	}
	for _, t := range r.Tools {
		if t.Function.Name == named.Function.Name {
			return "function:" + named.Function.Name, nil
		}
	}
	return "", invalidf("tool_choice", "Invalid 'tool_choice': function '%s' is not among the request's tools.", named.Function.Name)
}

// maxTokens is the output limit the request states (max_completion_tokens,
// else max_tokens), nil when it states none.
func (r *chatRequest) maxTokens() *int {
	if r.MaxCompletionTokens != nil {
		return r.MaxCompletionTokens
	}
	return r.MaxTokens
}

// toAPI converts a validated request to the backend's chat request, which
// runs with outputCap as its output limit (see Server.admit).
func (r *chatRequest) toAPI(backendModel string, outputCap int) (*api.ChatRequest, error) {
	in := r.ChatCompletionRequest
	in.Model = backendModel
	in.DebugRenderOnly = false
	in.MaxTokens = &outputCap

	in.Messages = make([]openai.Message, len(r.Messages))
	for i, m := range r.Messages {
		if m.Role == "developer" {
			m.Role = "system"
		}
		m.Content = joinTextParts(m.Content)
		in.Messages[i] = m
	}

	choice, _ := r.toolChoice()
	switch {
	case choice == "none":
		in.Tools = nil
	case strings.HasPrefix(choice, "function:"):
		name := strings.TrimPrefix(choice, "function:")
		in.Tools = nil
		for _, t := range r.Tools {
			if t.Function.Name == name {
				in.Tools = append(in.Tools, t)
			}
		}
	}
	if in.ResponseFormat != nil && in.ResponseFormat.Type == "text" {
		in.ResponseFormat = nil
	}

	out, err := openai.FromChatRequest(in)
	if err != nil {
		return nil, invalidf("messages", "Invalid messages: %v.", err)
	}
	out.Truncate = &truncateOff
	return out, nil
}

// joinTextParts turns a content-part array made only of text parts into one
// string, so a multi-part message stays one message (upstream would split
// it into several, and a template that reads only the last user message
// would drop the rest). Arrays with images are left to upstream.
func joinTextParts(content any) any {
	parts, ok := content.([]any)
	if !ok {
		return content
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		m, _ := p.(map[string]any)
		if m["type"] != "text" {
			return content
		}
		t, _ := m["text"].(string)
		texts = append(texts, t)
	}
	return strings.Join(texts, textSeparator)
}
