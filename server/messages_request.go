package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
)

// messagesRequest is the body of POST /v1/messages (and, without
// max_tokens, of /v1/messages/count_tokens): Ollama's Anthropic request
// type, with max_tokens as a pointer (Anthropic requires it, and a zero
// would pass unseen) and the OpenAI options Anthropic lacks, to refuse
// them by name rather than ignore them.
type messagesRequest struct {
	anthropic.MessagesRequest
	MaxTokens *int `json:"max_tokens"`

	// OpenAI's names, which the Messages API does not have.
	N                   json.RawMessage `json:"n"`
	Stop                json.RawMessage `json:"stop"`
	MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Logprobs            json.RawMessage `json:"logprobs"`
	PresencePenalty     json.RawMessage `json:"presence_penalty"`
	FrequencyPenalty    json.RawMessage `json:"frequency_penalty"`
	Seed                json.RawMessage `json:"seed"`

	counting bool             // count_tokens: no max_tokens
	backend  *api.ChatRequest // Ollama's conversion, once checked
	chat     chatRequest      // the chat request the pipeline runs, once checked
}

func (r *messagesRequest) modelName() string { return r.Model }

// bodyUser is the end user the body names (metadata.user_id).
func (r *messagesRequest) bodyUser() string {
	if r.Metadata == nil {
		return ""
	}
	return r.Metadata.UserID
}

// check validates the request, naming the first bad field, and converts
// it: Ollama's conversion, then the chat request (see bridgeChat).
func (r *messagesRequest) check() error {
	if err := r.validate(); err != nil {
		return err
	}
	in := r.MessagesRequest
	if r.MaxTokens != nil {
		in.MaxTokens = *r.MaxTokens
	}
	in.Messages = resultsFirst(r.Messages)
	in.Tools = nil // checked: only custom tools, converted below as the same
	for _, t := range r.Tools {
		t.Type = ""
		in.Tools = append(in.Tools, t)
	}
	out, err := anthropic.FromMessagesRequest(in)
	if err != nil {
		return invalidf("messages", "Invalid request: %v.", err)
	}
	if r.counting {
		delete(out.Options, "num_predict")
	}
	r.backend = out
	r.chat = bridgeChat(out, r.Model)
	if tc := r.ToolChoice; tc != nil && len(r.Tools) > 0 {
		switch tc.Type {
		case "auto":
			r.chat.ToolChoice = toolChoiceJSON("auto", "")
		case "any":
			r.chat.ToolChoice = toolChoiceJSON("required", "")
		case "none":
			r.chat.ToolChoice = toolChoiceJSON("none", "")
		case "tool":
			r.chat.ToolChoice = toolChoiceJSON("", tc.Name)
		}
	}
	if err := r.chat.validate(); err != nil {
		return err // a conversion the chat route refuses: named in its terms
	}
	return nil
}

// resultsFirst splits each user message holding tool_result blocks and
// other blocks in two: the results, then the rest. Ollama's conversion
// puts a message's text before its tool results; the results answer the
// calls just before them, and templates render them there.
func resultsFirst(msgs []anthropic.MessageParam) []anthropic.MessageParam {
	out := make([]anthropic.MessageParam, 0, len(msgs))
	for _, m := range msgs {
		blocks, ok := m.Content.([]any)
		if !ok || m.Role != "user" {
			out = append(out, m)
			continue
		}
		var results, rest []any
		for _, b := range blocks {
			if bm, _ := b.(map[string]any); bm["type"] == "tool_result" {
				results = append(results, b)
			} else {
				rest = append(rest, b)
			}
		}
		if len(results) == 0 || len(rest) == 0 {
			out = append(out, m)
			continue
		}
		out = append(out, anthropic.MessageParam{Role: m.Role, Content: results}, anthropic.MessageParam{Role: m.Role, Content: rest})
	}
	return out
}

// unsupported refuses an option the API does not have.
func unsupported(field, api string) error {
	return invalidf(field, "Unsupported parameter: '%s' is not an option of the %s API.", field, api)
}

func (r *messagesRequest) validate() error {
	for _, o := range []struct {
		name string
		v    json.RawMessage
	}{{"n", r.N}, {"stop", r.Stop}, {"max_completion_tokens", r.MaxCompletionTokens}, {"response_format", r.ResponseFormat},
		{"logprobs", r.Logprobs}, {"presence_penalty", r.PresencePenalty}, {"frequency_penalty", r.FrequencyPenalty}, {"seed", r.Seed}} {
		if len(o.v) > 0 {
			if o.name == "stop" {
				return invalidf("stop", "Unsupported parameter: 'stop' is not an option of the Messages API; use 'stop_sequences'.")
			}
			return unsupported(o.name, "Messages")
		}
	}
	if r.Model == "" {
		return missing("model")
	}
	if !r.counting {
		if r.MaxTokens == nil {
			return missing("max_tokens")
		}
		if *r.MaxTokens < 1 {
			return invalidf("max_tokens", "Invalid 'max_tokens': expected a value >= 1, got %d.", *r.MaxTokens)
		}
	}
	if len(r.Messages) == 0 {
		return missing("messages")
	}
	if err := validateSystem(r.System); err != nil {
		return err
	}
	if t := r.Temperature; t != nil && (*t < 0 || *t > 1) {
		return invalidf("temperature", "Invalid 'temperature': expected a value between 0 and 1, got %g.", *t)
	}
	if p := r.TopP; p != nil && (*p < 0 || *p > 1) {
		return invalidf("top_p", "Invalid 'top_p': expected a value between 0 and 1, got %g.", *p)
	}
	if k := r.TopK; k != nil && *k < 0 {
		return invalidf("top_k", "Invalid 'top_k': expected a value >= 0, got %d.", *k)
	}
	for i, s := range r.StopSequences {
		if s == "" {
			return invalidf(indexed("stop_sequences", i), "Invalid 'stop_sequences[%d]': a stop sequence may not be empty.", i)
		}
	}
	if err := r.validateTools(); err != nil {
		return err
	}
	if th := r.Thinking; th != nil {
		switch th.Type {
		case "enabled", "disabled", "adaptive":
		default:
			return invalidf("thinking.type", "Invalid 'thinking.type': expected 'enabled', 'disabled' or 'adaptive', got '%s'.", th.Type)
		}
	}
	if r.Metadata != nil {
		if err := checkUserID("metadata.user_id", r.Metadata.UserID); err != nil {
			return err
		}
	}
	return r.validateMessages()
}

// checkUserID refuses an end-user id over 256 bytes or with control
// characters.
func checkUserID(field, id string) error {
	if len(id) > 256 {
		return invalidf(field, "Invalid '%s': at most 256 bytes.", field)
	}
	if strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return invalidf(field, "Invalid '%s': control characters are not allowed.", field)
	}
	return nil
}

func validateSystem(sys any) error {
	switch s := sys.(type) {
	case nil, string:
		return nil
	case []any:
		for i, b := range s {
			f := indexed("system", i)
			m, ok := b.(map[string]any)
			if !ok {
				return invalidf(f, "Invalid type for '%s': expected a text block.", f)
			}
			if m["type"] != "text" {
				return invalidf(f+".type", "Invalid '%s.type': system blocks must be text blocks.", f)
			}
			if _, ok := m["text"].(string); !ok {
				return missing(f + ".text")
			}
		}
		return nil
	}
	return invalidf("system", "Invalid type for 'system': expected a string or an array of text blocks.")
}

func (r *messagesRequest) validateTools() error {
	names := map[string]bool{}
	for i, t := range r.Tools {
		f := indexed("tools", i)
		if t.Type != "" && t.Type != "custom" {
			return invalidf(f+".type", "Invalid '%s.type': '%s' is a server tool; only custom tools (type 'custom' or none) are supported.", f, t.Type)
		}
		if t.Name == "" {
			return missing(f + ".name")
		}
		if len(t.InputSchema) == 0 {
			return missing(f + ".input_schema")
		}
		var schema map[string]any
		if json.Unmarshal(t.InputSchema, &schema) != nil {
			return invalidf(f+".input_schema", "Invalid '%s.input_schema': expected a JSON schema object.", f)
		}
		names[t.Name] = true
	}
	if tc := r.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto", "any", "none":
		case "tool":
			if !names[tc.Name] {
				return invalidf("tool_choice.name", "Invalid 'tool_choice.name': tool '%s' is not among the request's tools.", tc.Name)
			}
		default:
			return invalidf("tool_choice.type", "Invalid 'tool_choice.type': expected 'auto', 'any', 'tool' or 'none', got '%s'.", tc.Type)
		}
	}
	return nil
}

// validateMessages checks the roles and every content block: its type,
// the role that may send it, its required fields, and that each
// tool_result answers a tool_use sent before it.
func (r *messagesRequest) validateMessages() error {
	var calls []string // tool_use ids seen so far
	for i, m := range r.Messages {
		f := indexed("messages", i)
		if m.Role != "user" && m.Role != "assistant" {
			return invalidf(f+".role", "Invalid '%s.role': expected 'user' or 'assistant', got '%s'.", f, m.Role)
		}
		switch c := m.Content.(type) {
		case string:
			continue
		case []any:
			for j, b := range c {
				bf := indexed(f+".content", j)
				block, ok := b.(map[string]any)
				if !ok {
					return invalidf(bf, "Invalid type for '%s': expected a content block.", bf)
				}
				id, err := validateBlock(bf, m.Role, block, calls)
				if err != nil {
					return err
				}
				if id != "" {
					calls = append(calls, id)
				}
			}
		case nil:
			return missing(f + ".content")
		default:
			return invalidf(f+".content", "Invalid type for '%s.content': expected a string or an array of content blocks.", f)
		}
	}
	return nil
}

// validateBlock checks one content block; for a tool_use it returns its id.
func validateBlock(f, role string, b map[string]any, calls []string) (string, error) {
	str := func(k string) (string, bool) { s, ok := b[k].(string); return s, ok }
	only := func(want string) error {
		if role != want {
			return invalidf(f+".type", "Invalid '%s': %s blocks may only be sent in %s messages.", f, b["type"], want)
		}
		return nil
	}
	switch t, _ := str("type"); t {
	case "text":
		if _, ok := str("text"); !ok {
			return "", missing(f + ".text")
		}
	case "image":
		if err := only("user"); err != nil {
			return "", err
		}
		src, ok := b["source"].(map[string]any)
		if !ok {
			return "", missing(f + ".source")
		}
		if src["type"] != "base64" {
			return "", invalidf(f+".source.type", "Invalid '%s.source.type': only base64 images are supported.", f)
		}
		if _, ok := src["data"].(string); !ok {
			return "", missing(f + ".source.data")
		}
	case "tool_use":
		if err := only("assistant"); err != nil {
			return "", err
		}
		id, _ := str("id")
		if id == "" {
			return "", missing(f + ".id")
		}
		if name, _ := str("name"); name == "" {
			return "", missing(f + ".name")
		}
		if in, ok := b["input"]; ok {
			if _, ok := in.(map[string]any); !ok {
				return "", invalidf(f+".input", "Invalid '%s.input': expected an object.", f)
			}
		}
		return id, nil
	case "tool_result":
		if err := only("user"); err != nil {
			return "", err
		}
		id, _ := str("tool_use_id")
		if id == "" {
			return "", missing(f + ".tool_use_id")
		}
		if !slices.Contains(calls, id) {
			return "", invalidf(f+".tool_use_id", "Invalid '%s.tool_use_id': no tool_use block with id '%s' comes before it.", f, id)
		}
		switch c := b["content"].(type) {
		case nil, string:
		case []any:
			for k, p := range c {
				pm, _ := p.(map[string]any)
				if pm["type"] != "text" {
					return "", invalidf(fmt.Sprintf("%s.content[%d].type", f, k), "Invalid '%s.content[%d]': tool results may hold only text blocks.", f, k)
				}
				if _, ok := pm["text"].(string); !ok {
					return "", missing(fmt.Sprintf("%s.content[%d].text", f, k))
				}
			}
		default:
			return "", invalidf(f+".content", "Invalid type for '%s.content': expected a string or an array of text blocks.", f)
		}
	case "thinking":
		if err := only("assistant"); err != nil {
			return "", err
		}
		if _, ok := str("thinking"); !ok {
			return "", missing(f + ".thinking")
		}
	case "":
		return "", missing(f + ".type")
	default:
		return "", invalidf(f+".type", "Invalid '%s.type': '%s' blocks are not supported; use text, image, tool_use, tool_result or thinking.", f, t)
	}
	return "", nil
}
