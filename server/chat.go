package server

import (
	"context"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

func (s *Server) chat(c *gin.Context) error {
	var req chatRequest
	return s.pipeline(c, &req, func(p *pipe) error {
		if err := p.filterChat(&req); err != nil {
			return err
		}
		if err := p.admitChat(&req); err != nil {
			return err
		}
		areq, err := req.toAPI(p.model.Name, p.adm.outputCap)
		if err != nil {
			return err
		}
		if p.mustStream() {
			areq.Stream = &streamOn
		}
		run := func(ctx context.Context, fn func(piece) error) error {
			return s.backend.Chat(ctx, areq, func(r api.ChatResponse) error { return fn(chatPiece(r)) })
		}
		id := "chatcmpl-" + requestID(c)
		if req.Stream {
			return p.stream(run, &chatStream{
				includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
				chunk: chatChunk{
					ID:                id,
					Object:            "chat.completion.chunk",
					Created:           time.Now().Unix(),
					Model:             req.Model,
					SystemFingerprint: systemFingerprint,
					Choices:           make([]chatChunkChoice, 1),
				},
			})
		}
		return p.whole(run, func(text string, calls []api.ToolCall, res result) any {
			msg := chatMessage{Role: "assistant", Content: &text}
			if len(calls) > 0 {
				msg.ToolCalls = openai.ToToolCalls(calls)
				if text == "" {
					msg.Content = nil
				}
			}
			return chatCompletion{
				ID:                id,
				Object:            "chat.completion",
				Created:           time.Now().Unix(),
				Model:             req.Model,
				SystemFingerprint: systemFingerprint,
				Choices:           []chatChoice{{Message: msg, FinishReason: res.reason}},
				Usage:             res.usage,
			}
		})
	})
}

// outcome settles the request's reservation and returns the usage to report.
// cut is true when the answer's own limits ended it (the character cap, a
// safety block): the backend call was cancelled before its counts, so the
// prompt is charged at its estimate and the output at the pieces received
// (one token each).
func (s *Server) outcome(adm *admission, err error, m api.Metrics, pieces int) (u usage, cut bool) {
	switch {
	case stopped(err):
		u = usage{PromptTokens: int(adm.prompt), CompletionTokens: pieces, TotalTokens: int(adm.prompt) + pieces}
		adm.settle(u.PromptTokens, u.CompletionTokens, true)
		return u, true
	case err != nil:
		adm.settle(0, 0, false)
		return usage{}, false
	}
	u = usageOf(m)
	adm.settle(u.PromptTokens, u.CompletionTokens, true)
	return u, false
}

// chatStream is OpenAI's chat chunk stream: a first delta with the role,
// content (and tool call) deltas, an empty delta with the finish reason,
// the usage chunk when asked for, and [DONE].
type chatStream struct {
	chunk        chatChunk
	includeUsage bool
	sentRole     bool
	text         contentChunk // frames the deltas of text alone
	// What the events point to, here rather than each on the heap.
	empty, tail, reason string
	usage               usage
}

func (cs *chatStream) send(sse *sseWriter, d chatDelta, finish *string) error {
	cs.chunk.Choices[0] = chatChunkChoice{Delta: d, FinishReason: finish}
	return sse.Event(&cs.chunk)
}

func (cs *chatStream) delta(sse *sseWriter, text string, calls []api.ToolCall) error {
	if !cs.sentRole {
		cs.sentRole = true
		if err := cs.send(sse, chatDelta{Role: "assistant", Content: &cs.empty}, nil); err != nil {
			return err
		}
	}
	switch {
	case len(calls) > 0:
		return cs.otherDelta(sse, text, calls)
	case text != "":
		sse.frame(cs.text.event(&cs.chunk, text))
	}
	return nil // a piece that releases nothing
}

// otherDelta frames a delta with tool calls (apart from delta, whose text
// then does not escape).
func (cs *chatStream) otherDelta(sse *sseWriter, text string, calls []api.ToolCall) error {
	d := chatDelta{ToolCalls: openai.ToToolCalls(calls)}
	if text != "" {
		d.Content = &text
	}
	return cs.send(sse, d, nil)
}

func (cs *chatStream) final(sse *sseWriter, tail string, res result) error {
	if tail != "" {
		cs.tail = tail
		if err := cs.send(sse, chatDelta{Content: &cs.tail}, nil); err != nil {
			return err
		}
	}
	cs.reason = res.reason
	if err := cs.send(sse, chatDelta{}, &cs.reason); err != nil || !cs.includeUsage {
		return err
	}
	cs.chunk.Choices = []chatChunkChoice{}
	cs.usage = res.usage
	cs.chunk.Usage = &cs.usage
	return sse.Event(&cs.chunk)
}
