package server

import (
	"encoding/json"
	"slices"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// responsesRequest is the body of POST /v1/responses: Ollama's Responses
// request type, with the input kept raw (decoded in check, so a bad item
// is refused naming 'input'), and the fields Warden must check that
// Ollama's type drops: tool_choice, store, previous_response_id, the end
// user, and chat options the Responses API lacks.
type responsesRequest struct {
	openai.ResponsesRequest
	Input              json.RawMessage `json:"input"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Prompt             json.RawMessage `json:"prompt"`
	User               string          `json:"user"`
	SafetyIdentifier   string          `json:"safety_identifier"`

	// Chat completions' names, which the Responses API does not have.
	N              json.RawMessage `json:"n"`
	Messages       json.RawMessage `json:"messages"`
	MaxTokens      json.RawMessage `json:"max_tokens"`
	Stop           json.RawMessage `json:"stop"`
	ResponseFormat json.RawMessage `json:"response_format"`

	backend *api.ChatRequest // Ollama's conversion, once checked
	chat    chatRequest      // the chat request the pipeline runs, once checked
}

func (r *responsesRequest) modelName() string { return r.Model }

// bodyUser is the end user the body names: safety_identifier, else the
// deprecated user.
func (r *responsesRequest) bodyUser() string {
	if r.SafetyIdentifier != "" {
		return r.SafetyIdentifier
	}
	return r.User
}

func (r *responsesRequest) stream() bool { return r.Stream != nil && *r.Stream }

// check validates the request, naming the first bad field, and converts
// it: Ollama's conversion, then the chat request (see bridgeChat).
func (r *responsesRequest) check() error {
	if err := r.validate(); err != nil {
		return err
	}
	out, err := openai.FromResponsesRequest(r.ResponsesRequest)
	if err != nil {
		return invalidf("input", "Invalid 'input': %v.", err)
	}
	r.backend = out
	r.chat = bridgeChat(out, r.Model)
	if f := r.Text; f != nil && f.Format != nil && f.Format.Type == "json_object" {
		r.chat.ResponseFormat = &openai.ResponseFormat{Type: "json_object"}
	}
	if e := r.Reasoning.Effort; e != "" {
		if e == "minimal" {
			e = "low"
		}
		r.chat.ReasoningEffort = &e
	}
	r.chat.ToolChoice = r.ToolChoice
	if err := r.chat.validate(); err != nil {
		return err
	}
	return nil
}

func (r *responsesRequest) validate() error {
	for _, o := range []struct {
		name, hint string
		v          json.RawMessage
	}{{"n", "", r.N}, {"messages", " use 'input'", r.Messages}, {"max_tokens", " use 'max_output_tokens'", r.MaxTokens},
		{"stop", "", r.Stop}, {"response_format", " use 'text.format'", r.ResponseFormat}} {
		if len(o.v) > 0 && string(o.v) != "null" {
			if o.hint != "" {
				return invalidf(o.name, "Unsupported parameter: '%s' is not an option of the Responses API;%s.", o.name, o.hint)
			}
			return unsupported(o.name, "Responses")
		}
	}
	if r.Model == "" {
		return missing("model")
	}
	if r.PreviousResponseID != nil && *r.PreviousResponseID != "" {
		return invalidf("previous_response_id", "Unsupported parameter: 'previous_response_id'. Warden keeps no conversation state (store is ignored); send the whole conversation in 'input'.")
	}
	if len(r.Conversation) > 0 && string(r.Conversation) != "null" {
		return invalidf("conversation", "Unsupported parameter: 'conversation'. Warden keeps no conversation state; send the whole conversation in 'input'.")
	}
	if len(r.Prompt) > 0 && string(r.Prompt) != "null" {
		return invalidf("prompt", "Unsupported parameter: 'prompt'. Warden keeps no stored prompts; send the instructions and input.")
	}
	if r.Background {
		return invalidf("background", "Unsupported parameter: 'background'. Warden answers in the request.")
	}
	if len(r.Input) == 0 || string(r.Input) == "null" {
		return missing("input")
	}
	if err := r.ResponsesRequest.Input.UnmarshalJSON(r.Input); err != nil {
		return invalidf("input", "Invalid 'input': %v.", err)
	}
	if r.ResponsesRequest.Input.Text == "" && len(r.ResponsesRequest.Input.Items) == 0 {
		return missing("input")
	}
	if mt := r.MaxOutputTokens; mt != nil && *mt < 1 {
		return invalidf("max_output_tokens", "Invalid 'max_output_tokens': expected a value >= 1, got %d.", *mt)
	}
	if err := validateSampling(r.Temperature, r.TopP, nil); err != nil {
		return err
	}
	if t := r.Truncation; t != nil && *t != "disabled" && *t != "auto" {
		return invalidf("truncation", "Invalid 'truncation': expected 'auto' or 'disabled', got '%s'.", *t)
	}
	switch r.Reasoning.Effort {
	case "", "none", "minimal", "low", "medium", "high":
	default:
		return invalidf("reasoning.effort", "Invalid 'reasoning.effort': expected 'none', 'minimal', 'low', 'medium' or 'high', got '%s'.", r.Reasoning.Effort)
	}
	if f := r.Text; f != nil && f.Format != nil {
		switch f.Format.Type {
		case "text", "json_object":
		case "json_schema":
			var schema map[string]any
			if json.Unmarshal(f.Format.Schema, &schema) != nil {
				return missing("text.format.schema")
			}
		default:
			return invalidf("text.format.type", "Invalid 'text.format.type': expected 'text', 'json_object' or 'json_schema', got '%s'.", f.Format.Type)
		}
	}
	for _, u := range []struct{ field, v string }{{"user", r.User}, {"safety_identifier", r.SafetyIdentifier}} {
		if err := checkUserID(u.field, u.v); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	for i, t := range r.Tools {
		f := indexed("tools", i)
		if t.Type != "function" {
			return invalidf(f+".type", "Invalid '%s.type': only function tools are supported, got '%s'.", f, t.Type)
		}
		if t.Name == "" {
			return missing(f + ".name")
		}
		names[t.Name] = true
	}
	if err := r.validateToolChoice(names); err != nil {
		return err
	}
	return r.validateItems()
}

// validateToolChoice checks tool_choice and rewrites it as the chat
// route's: a mode, or {"type":"function","function":{"name":...}}.
func (r *responsesRequest) validateToolChoice(names map[string]bool) error {
	if len(r.ToolChoice) == 0 || string(r.ToolChoice) == "null" {
		r.ToolChoice = nil
		return nil
	}
	var mode string
	if json.Unmarshal(r.ToolChoice, &mode) == nil {
		switch mode {
		case "none", "auto", "required":
			r.ToolChoice = toolChoiceJSON(mode, "")
			return nil
		}
		return invalidf("tool_choice", "Invalid 'tool_choice': expected 'none', 'auto', 'required' or a function, got '%s'.", mode)
	}
	var named struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if json.Unmarshal(r.ToolChoice, &named) != nil || named.Type != "function" || named.Name == "" {
		return invalidf("tool_choice", "Invalid 'tool_choice': expected a string or {\"type\": \"function\", \"name\": ...}.")
	}
	if !names[named.Name] {
		return invalidf("tool_choice.name", "Invalid 'tool_choice.name': function '%s' is not among the request's tools.", named.Name)
	}
	r.ToolChoice = toolChoiceJSON("", named.Name)
	return nil
}

var responsesRoles = map[string]bool{"user": true, "system": true, "developer": true, "assistant": true}

// validateItems checks each input item: message roles and content, that
// images are inline, function call arguments, and that each
// function_call_output answers a function_call sent before it.
func (r *responsesRequest) validateItems() error {
	var calls []string
	for i, it := range r.ResponsesRequest.Input.Items {
		f := indexed("input", i)
		switch v := it.(type) {
		case openai.ResponsesInputMessage:
			if !responsesRoles[v.Role] {
				return invalidf(f+".role", "Invalid '%s.role': expected 'user', 'system', 'developer' or 'assistant', got '%s'.", f, v.Role)
			}
			for j, c := range v.Content {
				cf := indexed(f+".content", j)
				switch cv := c.(type) {
				case openai.ResponsesImageContent:
					if v.Role != "user" {
						return invalidf(cf+".type", "Invalid '%s': images may only be sent in user messages.", cf)
					}
					if cv.ImageURL == "" {
						return invalidf(cf+".image_url", "Invalid '%s': only inline images (a data: URL in image_url) are supported.", cf)
					}
				case openai.ResponsesOutputTextContent:
					if v.Role != "assistant" {
						return invalidf(cf+".type", "Invalid '%s': output_text is only allowed in assistant messages.", cf)
					}
				}
			}
		case openai.ResponsesFunctionCall:
			if v.CallID == "" {
				return missing(f + ".call_id")
			}
			if v.Name == "" {
				return missing(f + ".name")
			}
			if _, err := scanArguments(func(s string) string { return s }, v.Arguments); v.Arguments != "" && err != nil {
				return badArguments(f + ".arguments")
			}
			calls = append(calls, v.CallID)
		case openai.ResponsesFunctionCallOutput:
			if v.CallID == "" {
				return missing(f + ".call_id")
			}
			if !slices.Contains(calls, v.CallID) {
				return invalidf(f+".call_id", "Invalid '%s.call_id': no function_call with call_id '%s' comes before it.", f, v.CallID)
			}
		}
	}
	return nil
}
