package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
)

// messages serves POST /v1/messages, Anthropic's Messages API, on the chat
// path: the request is converted to a chat request (see bridgeChat), which
// is filtered, admitted and sent to the backend as a chat is; the answer
// is shaped by Ollama's Anthropic conversions.
func (s *Server) messages(c *gin.Context) error {
	var req messagesRequest
	return s.pipeline(c, &req, func(p *pipe) error {
		if err := p.filterChat(&req.chat); err != nil {
			return err
		}
		if err := p.admitChat(&req.chat); err != nil {
			return err
		}
		areq, err := req.chat.toAPI(p.model.Name, p.adm.outputCap)
		if err != nil {
			return err
		}
		patchBackend(areq, req.backend)
		s.relaxThinking(p.ctx, areq)
		areq.Stream = &req.Stream
		if p.mustStream() {
			areq.Stream = &streamOn
		}
		run := chatRun(s.backend, areq, "toolu_")
		id := "msg_" + requestID(c)
		if req.Stream {
			return p.stream(run, &messagesStream{conv: anthropic.NewStreamConverter(id, req.Model, anthropic.EstimateInputTokens(req.MessagesRequest))})
		}
		return p.whole(run, func(text string, calls []api.ToolCall, res result) any {
			out := anthropic.ToMessagesResponse(id, api.ChatResponse{
				Model:   req.Model,
				Message: api.Message{Role: "assistant", Content: text, ToolCalls: calls},
				Metrics: api.Metrics{PromptEvalCount: res.usage.PromptTokens, EvalCount: res.usage.CompletionTokens},
			})
			if out.Content == nil {
				out.Content = []anthropic.ContentBlock{}
			}
			out.StopReason = stopReason(res.reason)
			return out
		})
	})
}

// chatRun is the backend chat call of the Messages and Responses routes:
// tool calls the backend sent without an id get one (prefix and random
// hex), as both APIs need ids to match results to calls.
func chatRun(b Backend, areq *api.ChatRequest, prefix string) runFunc {
	return func(ctx context.Context, fn func(piece) error) error {
		return b.Chat(ctx, areq, func(r api.ChatResponse) error {
			for i := range r.Message.ToolCalls {
				if r.Message.ToolCalls[i].ID == "" {
					r.Message.ToolCalls[i].ID = prefix + randomHex(12)
				}
			}
			return fn(chatPiece(r))
		})
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// stopReason maps a finish reason to Anthropic's stop_reason: an answer
// the safety policy cut ends in "refusal".
func stopReason(finish string) string {
	switch finish {
	case "tool_calls":
		return "tool_use"
	case "length":
		return "max_tokens"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// messagesStream is Anthropic's event stream, made by Ollama's stream
// converter: message_start, content blocks (start, deltas, stop),
// message_delta with the stop reason and usage, message_stop. Keep-alives
// are ping events.
type messagesStream struct {
	conv *anthropic.StreamConverter
}

var anthropicPing = []byte("event: ping\ndata: {\"type\": \"ping\"}\n\n")

func (ms *messagesStream) ping() []byte { return anthropicPing }

func (ms *messagesStream) send(sse *sseWriter, evs []anthropic.StreamEvent) error {
	for _, ev := range evs {
		if err := sse.NamedEvent(ev.Event, ev.Data); err != nil {
			return err
		}
	}
	return nil
}

func (ms *messagesStream) delta(sse *sseWriter, text string, calls []api.ToolCall) error {
	return ms.send(sse, ms.conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Content: text, ToolCalls: calls}}))
}

func (ms *messagesStream) final(sse *sseWriter, tail string, res result) error {
	evs := ms.conv.Process(api.ChatResponse{
		Message:    api.Message{Role: "assistant", Content: tail},
		Done:       true,
		DoneReason: "stop",
		Metrics:    api.Metrics{PromptEvalCount: res.usage.PromptTokens, EvalCount: res.usage.CompletionTokens},
	})
	for i, ev := range evs {
		if d, ok := ev.Data.(anthropic.MessageDeltaEvent); ok {
			d.Delta.StopReason = stopReason(res.reason)
			evs[i].Data = d
		}
	}
	return ms.send(sse, evs)
}

func (ms *messagesStream) errorEvent(sse *sseWriter, ae *apiError) {
	_ = sse.NamedEvent("error", anthropic.StreamErrorEvent{Type: "error",
		Error: anthropic.Error{Type: anthropicErrorType(ae.Status), Message: ae.Message}})
}

// countTokens serves POST /v1/messages/count_tokens: the prompt's token
// estimate, by Ollama's Anthropic estimate, for a model the key may use.
// Nothing reaches the model and nothing is charged.
func (s *Server) countTokens(c *gin.Context) error {
	req := messagesRequest{counting: true}
	if err := decodeJSON(c.Request.Body, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	if _, err := s.useModel(c.Request.Context(), c, req.Model); err != nil {
		return err
	}
	return s.respond(c, anthropic.CountTokensResponse{InputTokens: anthropic.EstimateInputTokens(req.MessagesRequest)}, outcome{})
}

var _ namedStream = (*messagesStream)(nil)
