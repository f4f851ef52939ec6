package models

import (
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
)

// TestDemoTemplate renders DemoTemplate with Ollama's own template
// package: Ollama grants the tools capability by its variables, a lone
// prompt passes through as the old "{{ .Prompt }}" template passed it, and
// a conversation renders every part an agent sends.
func TestDemoTemplate(t *testing.T) {
	tmpl, err := template.Parse(DemoTemplate)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := tmpl.Vars()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"tools", "messages"} {
		if !slices.Contains(vars, v) {
			t.Errorf("template variables %v lack %q: Ollama would refuse tools", vars, v)
		}
	}

	render := func(v template.Values) string {
		var b strings.Builder
		if err := tmpl.Execute(&b, v); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := render(template.Values{Messages: []api.Message{{Role: "user", Content: "Once upon a time"}}}); got != "Once upon a time" {
		t.Errorf("lone prompt rendered as %q, want it unchanged", got)
	}

	props := api.NewToolPropertiesMap()
	props.Set("city", api.ToolProperty{Type: api.PropertyType{"string"}})
	args := api.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	got := render(template.Values{
		Messages: []api.Message{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: "Weather?"},
			{Role: "assistant", ToolCalls: []api.ToolCall{{ID: "call_1", Function: api.ToolCallFunction{Name: "weather", Arguments: args}}}},
			{Role: "tool", Content: "18 degrees", ToolCallID: "call_1"},
		},
		Tools: api.Tools{{Type: "function", Function: api.ToolFunction{Name: "weather", Description: "Looks it up",
			Parameters: api.ToolFunctionParameters{Type: "object", Properties: props}}}},
	})
	want := "<|system|>\nBe brief.\n<|tools|>\n"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("rendered %q, want it to start %q", got, want)
	}
	for _, part := range []string{`"name":"weather"`, `"description":"Looks it up"`, "<|user|>\nWeather?\n",
		`<|assistant|>` + "\n" + `{"name":"weather","arguments":{"city":"Paris"}}`, "<|tool|>\n18 degrees\n"} {
		if !strings.Contains(got, part) {
			t.Errorf("rendered %q, missing %q", got, part)
		}
	}
	if !strings.HasSuffix(got, "<|assistant|>\n") {
		t.Errorf("rendered %q, want it to end with the assistant's marker", got)
	}
}
