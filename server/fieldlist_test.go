package server

import (
	"reflect"
	"slices"
	"testing"

	"github.com/ollama/ollama/api"
)

// textFields lists every field of the backend's chat request that can
// carry text, by path, and says what becomes of it: scanned by the filter
// (filterChat), or exempt and why. TestEveryBackendTextFieldIsFiltered
// fails when an upstream release adds a field this list does not name.
var textFields = map[string]string{
	"Model":                                     "exempt: resolved against the backend's models; never rendered",
	"Messages[].Role":                           "exempt: validated against the five roles",
	"Messages[].Content":                        "scanned: message content, strings and text parts, and joined per run of same-role messages",
	"Messages[].Thinking":                       "scanned: the assistant's reasoning",
	"Messages[].Images[]":                       "exempt: image data, not text the template renders",
	"Messages[].ToolCalls[].ID":                 "scanned: the tool call's id",
	"Messages[].ToolCalls[].Function.Name":      "scanned: tool call function names",
	"Messages[].ToolCalls[].Function.Arguments": "scanned: parsed, every key and value",
	"Messages[].ToolName":                       "scanned: the tool message's name",
	"Messages[].ToolCallID":                     "scanned: the tool message's tool_call_id",
	"Format":                                    "exempt: response_format's schema constrains sampling; it is not rendered into the prompt",
	"KeepAlive":                                 "exempt: never set by Warden",
	"Tools[].Type":                              "exempt: validated as \"function\"",
	"Tools[].Items":                             "scanned: the tool's JSON, every key and string",
	"Tools[].Function.Name":                     "scanned: the tool's JSON",
	"Tools[].Function.Description":              "scanned: the tool's JSON",
	"Tools[].Function.Parameters.Type":          "scanned: the tool's JSON",
	"Tools[].Function.Parameters.Defs":          "scanned: the tool's JSON",
	"Tools[].Function.Parameters.Items":         "scanned: the tool's JSON",
	"Tools[].Function.Parameters.Required[]":    "scanned: the tool's JSON",
	"Tools[].Function.Parameters.Properties":    "scanned: the tool's JSON (property names and every schema inside)",
	"Options":                                   "exempt: sampling options and stop sequences, not rendered into the prompt",
	"Think.Value":                               "exempt: a flag or a level name (reasoning_effort), validated upstream",
}

// TestEveryBackendTextFieldIsFiltered walks api.ChatRequest and fails for
// a field that can carry text (a string, a slice of strings, an interface,
// a map, raw bytes, or an opaque type) that textFields does not name, and
// for a name in textFields that is no longer a field.
func TestEveryBackendTextFieldIsFiltered(t *testing.T) {
	var found []string
	seen := map[reflect.Type]bool{}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch typ.Kind() {
		case reflect.String, reflect.Interface, reflect.Map:
			found = append(found, prefix)
			return
		case reflect.Slice, reflect.Array:
			if typ.Elem().Kind() == reflect.Uint8 {
				found = append(found, prefix) // raw bytes: json.RawMessage, image data
				return
			}
			walk(prefix+"[]", typ.Elem())
			return
		case reflect.Struct:
		default:
			return // numbers and booleans carry no text
		}
		if typ == reflect.TypeFor[api.Duration]() {
			found = append(found, prefix)
			return
		}
		exported := false
		for f := range typ.Fields() {
			exported = exported || f.IsExported()
		}
		if !exported { // an opaque container (ordered maps): its keys and values
			found = append(found, prefix)
			return
		}
		if seen[typ] {
			return
		}
		seen[typ] = true
		defer delete(seen, typ)
		for f := range typ.Fields() {
			if !f.IsExported() || f.Tag.Get("json") == "-" {
				continue
			}
			name := f.Name
			if prefix != "" {
				name = prefix + "." + f.Name
			}
			walk(name, f.Type)
		}
	}
	walk("", reflect.TypeFor[api.ChatRequest]())

	for _, p := range found {
		if _, ok := textFields[p]; !ok {
			t.Errorf("api.ChatRequest.%s can carry text: scan it in filterChat, or exempt it in textFields with the reason", p)
		}
	}
	for p := range textFields {
		if !slices.Contains(found, p) {
			t.Errorf("textFields names %s, which api.ChatRequest no longer has (or which carries no text)", p)
		}
	}
}
