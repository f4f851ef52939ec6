package server

import (
	"errors"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// responses serves POST /v1/responses, OpenAI's Responses API without
// state, on the chat path: the request is converted to a chat request (see
// bridgeChat), which is filtered, admitted and sent to the backend as a
// chat is; the answer is shaped by Ollama's Responses conversions. store
// is accepted and ignored (false is echoed); previous_response_id is
// refused.
func (s *Server) responses(c *gin.Context) error {
	var req responsesRequest
	return s.pipeline(c, &req, func(p *pipe) error {
		if err := p.filterChat(&req.chat); err != nil {
			return inputParam(err)
		}
		if err := p.admitChat(&req.chat); err != nil {
			return err
		}
		areq, err := req.chat.toAPI(p.model.Name, p.adm.outputCap)
		if err != nil {
			return inputParam(err)
		}
		patchBackend(areq, req.backend)
		s.relaxThinking(p.ctx, areq)
		stream := req.stream()
		areq.Stream = &stream
		if p.mustStream() {
			areq.Stream = &streamOn
		}
		run := chatRun(s.backend, areq, "call_")
		id, itemID := "resp_"+requestID(c), "msg_"+requestID(c)
		if stream {
			return p.stream(run, &responsesStream{conv: openai.NewResponsesStreamConverter(id, itemID, req.Model, req.ResponsesRequest)})
		}
		return p.whole(run, func(text string, calls []api.ToolCall, res result) any {
			out := openai.ToResponse(req.Model, id, itemID, api.ChatResponse{
				CreatedAt: time.Now(),
				Message:   api.Message{Role: "assistant", Content: text, ToolCalls: calls},
				Metrics:   api.Metrics{PromptEvalCount: res.usage.PromptTokens, EvalCount: res.usage.CompletionTokens},
			}, req.ResponsesRequest)
			if len(calls) > 0 && text != "" { // Ollama's conversion keeps only the calls
				out.Output = append([]openai.ResponsesOutputItem{{ID: itemID, Type: "message", Status: "completed", Role: "assistant",
					Content: []openai.ResponsesOutputContent{{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}}}}, out.Output...)
			}
			if reason := incompleteReason(res.reason); reason != "" {
				out.Status = "incomplete"
				out.IncompleteDetails = &openai.ResponsesIncompleteDetails{Reason: reason}
			} else {
				done := time.Now().Unix()
				out.CompletedAt = &done
			}
			return out
		})
	})
}

// inputParam names 'input' where the chat path names 'messages'.
func inputParam(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Param == "messages" {
		cp := *ae
		cp.Param = "input"
		return &cp
	}
	return err
}

// incompleteReason is the incomplete_details.reason of an answer that did
// not complete: cut by the safety policy, or by its output limit.
func incompleteReason(finish string) string {
	switch finish {
	case "content_filter":
		return "content_filter"
	case "length":
		return "max_output_tokens"
	}
	return ""
}

// responsesStream is the Responses event stream, made by Ollama's stream
// converter: response.created, response.in_progress, output items and
// content parts with their deltas, function call argument events, and
// response.completed, or response.incomplete for an answer that was cut.
type responsesStream struct {
	conv *openai.ResponsesStreamConverter
	seq  int // events sent
}

func (rs *responsesStream) ping() []byte { return nil }

func (rs *responsesStream) send(sse *sseWriter, evs []openai.ResponsesStreamEvent) error {
	for _, ev := range evs {
		if err := sse.NamedEvent(ev.Event, ev.Data); err != nil {
			return err
		}
		rs.seq++
	}
	return nil
}

func (rs *responsesStream) delta(sse *sseWriter, text string, calls []api.ToolCall) error {
	return rs.send(sse, rs.conv.Process(api.ChatResponse{Message: api.Message{Role: "assistant", Content: text, ToolCalls: calls}}))
}

func (rs *responsesStream) final(sse *sseWriter, tail string, res result) error {
	evs := rs.conv.Process(api.ChatResponse{
		Message: api.Message{Role: "assistant", Content: tail},
		Done:    true,
		Metrics: api.Metrics{PromptEvalCount: res.usage.PromptTokens, EvalCount: res.usage.CompletionTokens},
	})
	if reason := incompleteReason(res.reason); reason != "" {
		for i, ev := range evs {
			if ev.Event != "response.completed" {
				continue
			}
			data, _ := ev.Data.(map[string]any)
			resp, _ := data["response"].(map[string]any)
			if resp == nil {
				continue
			}
			resp["status"] = "incomplete"
			resp["completed_at"] = nil
			resp["incomplete_details"] = map[string]any{"reason": reason}
			data["type"] = "response.incomplete"
			evs[i].Event = "response.incomplete"
		}
	}
	return rs.send(sse, evs)
}

// errorEvent is the Responses stream's error event; it also carries the
// error object, by which OpenAI's SDKs end a stream with an error.
func (rs *responsesStream) errorEvent(sse *sseWriter, ae *apiError) {
	body := ae.body()
	_ = sse.NamedEvent("error", map[string]any{
		"type":            "error",
		"code":            body.Error.Code,
		"message":         ae.Message,
		"param":           body.Error.Param,
		"sequence_number": rs.seq,
		"error":           body.Error,
	})
}

var _ namedStream = (*responsesStream)(nil)
