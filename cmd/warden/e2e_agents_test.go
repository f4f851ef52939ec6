package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/responses"
	oshared "github.com/openai/openai-go/v3/shared"
)

// The coding-agent routes, Anthropic's Messages and OpenAI's Responses,
// through the official SDKs against warden serve with the real Ollama
// child and the demo model (whose answers are gibberish: the tests check
// the protocol, never the words).

// anthropicClient is an anthropic-sdk-go client using key (sent as
// x-api-key, the SDK's default), asking for temperature 0 (greedy, so a
// stream and a whole answer are the same text).
func (p *wardenProc) anthropicClient(key string) *anthropic.Client {
	c := anthropic.NewClient(
		aoption.WithBaseURL(p.base+"/"),
		aoption.WithAPIKey(key),
		aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(2*time.Minute),
		aoption.WithHTTPClient(p.hc),
		aoption.WithJSONSet("temperature", 0),
	)
	return &c
}

func agentMessage(user string, maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "warden-demo",
		MaxTokens: maxTokens,
		System:    []anthropic.TextBlockParam{{Text: "You are a coding agent."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(user))},
	}
}

var weatherSchema = map[string]any{"city": map[string]any{"type": "string", "description": "The city"}}

func textOf(m *anthropic.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

func TestE2EMessages(t *testing.T) {
	w := sharedWarden(t)
	c := w.anthropicClient(w.key)
	ctx := ctxT(t)

	msg, err := c.Messages.New(ctx, agentMessage("Tell me a story.", 24))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || msg.Role != "assistant" || textOf(msg) == "" {
		t.Fatalf("message %+v", msg)
	}
	if msg.StopReason != anthropic.StopReasonMaxTokens || msg.Usage.OutputTokens < 1 || msg.Usage.OutputTokens > 24 || msg.Usage.InputTokens < 1 {
		t.Fatalf("stop %q usage %+v, want max_tokens within 24", msg.StopReason, msg.Usage)
	}

	s := c.Messages.NewStreaming(ctx, agentMessage("Tell me a story.", 24))
	var (
		acc    anthropic.Message
		events []string
	)
	for s.Next() {
		ev := s.Current()
		events = append(events, ev.Type)
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if events[0] != "message_start" || events[len(events)-2] != "message_delta" || events[len(events)-1] != "message_stop" {
		t.Fatalf("events %v", events)
	}
	if textOf(&acc) != textOf(msg) || acc.StopReason != msg.StopReason {
		t.Fatalf("stream %q (%s) differs from non-stream %q (%s) at temperature 0", textOf(&acc), acc.StopReason, textOf(msg), msg.StopReason)
	}

	n, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "warden-demo",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("word ", 40)))}})
	if err != nil {
		t.Fatal(err)
	}
	if n.InputTokens < 40 || n.InputTokens > 60 {
		t.Fatalf("count_tokens %d, want about 50", n.InputTokens)
	}

	_, err = w.anthropicClient("wdn_nope_nope").Messages.New(ctx, agentMessage("hi", 4))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || ae.Type() != anthropic.ErrorTypeAuthenticationError {
		t.Fatalf("wrong key: %v, want 401 authentication_error", err)
	}
}

// TestE2EMessagesToolUse: the demo model takes tools (its template renders
// them), and a conversation holding a tool_use and its tool_result goes
// through. The model never calls a tool itself, so the call is written
// as an agent's history would hold it.
func TestE2EMessagesToolUse(t *testing.T) {
	w := sharedWarden(t)
	c := w.anthropicClient(w.key)
	ctx := ctxT(t)
	p := agentMessage("What is the weather in Paris?", 16)
	p.Tools = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{Properties: weatherSchema, Required: []string{"city"}}, "weather")}
	p.ToolChoice = anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}
	p.Thinking = anthropic.ThinkingConfigParamOfEnabled(1024) // as Claude Code asks, whatever the model
	first, err := c.Messages.New(ctx, p)
	if err != nil {
		t.Fatalf("tools refused: %v", err)
	}
	if first.StopReason != anthropic.StopReasonMaxTokens && first.StopReason != anthropic.StopReasonEndTurn && first.StopReason != anthropic.StopReasonToolUse {
		t.Fatalf("stop reason %q", first.StopReason)
	}

	p.Messages = append(p.Messages,
		anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]any{"city": "Paris"}, "weather")),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "18 degrees and sunny", false)))
	s := c.Messages.NewStreaming(ctx, p)
	var acc anthropic.Message
	for s.Next() {
		if err := acc.Accumulate(s.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("tool result refused: %v", err)
	}
	if acc.StopReason == "" || acc.Usage.InputTokens <= first.Usage.InputTokens {
		t.Fatalf("stop %q, input tokens %d after the tool result, %d before: the history did not reach the model", acc.StopReason, acc.Usage.InputTokens, first.Usage.InputTokens)
	}
}

func agentResponse(input string, maxTokens int64) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model:           "warden-demo",
		Instructions:    openai.String("You are a coding agent."),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String(input)},
		MaxOutputTokens: openai.Int(24),
		Temperature:     openai.Float(0),
		Store:           openai.Bool(true),
	}
}

func TestE2EResponses(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)

	resp, err := c.Responses.New(ctx, agentResponse("Tell me a story.", 24))
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() == "" || resp.Status != "incomplete" || resp.IncompleteDetails.Reason != "max_output_tokens" || resp.Usage.OutputTokens < 1 || resp.Usage.OutputTokens > 24 {
		t.Fatalf("response %q status %s (%s) usage %+v", resp.OutputText(), resp.Status, resp.IncompleteDetails.Reason, resp.Usage)
	}
	if !strings.Contains(resp.RawJSON(), `"store":false`) {
		t.Errorf("store not echoed false: %s", resp.RawJSON())
	}

	s := c.Responses.NewStreaming(ctx, agentResponse("Tell me a story.", 24))
	var (
		text   strings.Builder
		last   string
		status responses.ResponseStatus
	)
	for s.Next() {
		ev := s.Current()
		last = ev.Type
		if ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
		if ev.Type == "response.incomplete" || ev.Type == "response.completed" {
			status = ev.Response.Status
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != resp.OutputText() || last != "response.incomplete" || status != "incomplete" {
		t.Fatalf("stream %q ended %s (%s), non-stream %q", text.String(), last, status, resp.OutputText())
	}
}

// TestE2EResponsesFunctionCall: function tools are accepted, and a
// conversation holding a function_call and its output goes through.
func TestE2EResponsesFunctionCall(t *testing.T) {
	w := sharedWarden(t)
	c := w.client()
	ctx := ctxT(t)
	p := agentResponse("What is the weather in Paris?", 16)
	p.Reasoning = oshared.ReasoningParam{Effort: oshared.ReasoningEffortMedium} // as Codex CLI asks, whatever the model
	p.Tools = []responses.ToolUnionParam{responses.ToolParamOfFunction("weather",
		map[string]any{"type": "object", "properties": weatherSchema, "required": []string{"city"}}, false)}
	first, err := c.Responses.New(ctx, p)
	if err != nil {
		t.Fatalf("tools refused: %v", err)
	}
	p.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
		responses.ResponseInputItemParamOfMessage("What is the weather in Paris?", responses.EasyInputMessageRoleUser),
		responses.ResponseInputItemParamOfFunctionCall(`{"city":"Paris"}`, "call_1", "weather"),
		{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{CallID: param.NewOpt("call_1"),
			Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: openai.String("18 degrees and sunny")}}},
	}}
	second, err := c.Responses.New(ctx, p)
	if err != nil {
		t.Fatalf("function output refused: %v", err)
	}
	if second.Usage.InputTokens <= first.Usage.InputTokens {
		t.Fatalf("input tokens %d after the function output, %d before: the history did not reach the model", second.Usage.InputTokens, first.Usage.InputTokens)
	}
}
