package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

func (s *Server) chat(c *gin.Context) error {
	var req chatRequest
	if err := decodeJSON(c.Request.Body, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	defer cancel()
	m, err := s.models.resolve(ctx, req.Model)
	if err != nil {
		return err
	}
	areq, err := req.toAPI(m.Name, s.cfg.MaxOutputTokens)
	if err != nil {
		return err
	}
	id := "chatcmpl-" + requestID(c)
	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.streamChat(ctx, c, id, req.Model, areq, includeUsage)
	}

	var (
		text      strings.Builder
		toolCalls []openai.ToolCall
		last      api.ChatResponse
	)
	err = s.backend.Chat(ctx, areq, func(r api.ChatResponse) error {
		text.WriteString(r.Message.Content)
		if len(r.Message.ToolCalls) > 0 {
			toolCalls = append(toolCalls, openai.ToToolCalls(r.Message.ToolCalls)...)
		}
		last = r
		return nil
	})
	if err != nil {
		return err
	}
	content := text.String()
	msg := chatMessage{Role: "assistant", Content: &content, ToolCalls: toolCalls}
	if len(toolCalls) > 0 && content == "" {
		msg.Content = nil
	}
	c.JSON(http.StatusOK, chatCompletion{
		ID:                id,
		Object:            "chat.completion",
		Created:           time.Now().Unix(),
		Model:             req.Model,
		SystemFingerprint: systemFingerprint,
		Choices: []chatChoice{{
			Message:      msg,
			FinishReason: finishReason(last.DoneReason, len(toolCalls) > 0),
		}},
		Usage: usageOf(last.Metrics),
	})
	return nil
}

// streamChat sends the answer as OpenAI's chunk stream: a first delta with
// the role, content (and tool call) deltas, an empty delta with the finish
// reason, the usage chunk when asked for, and [DONE].
func (s *Server) streamChat(ctx context.Context, c *gin.Context, id, modelName string, areq *api.ChatRequest, includeUsage bool) error {
	sse := newSSE(c.Writer, s.cfg.KeepAliveInterval)
	defer sse.Stop()

	chunk := chatChunk{
		ID:                id,
		Object:            "chat.completion.chunk",
		Created:           time.Now().Unix(),
		Model:             modelName,
		SystemFingerprint: systemFingerprint,
		Choices:           make([]chatChunkChoice, 1),
	}
	send := func(d chatDelta, finish *string) error {
		chunk.Choices[0] = chatChunkChoice{Delta: d, FinishReason: finish}
		return sse.Event(&chunk)
	}

	var (
		sentRole, sentTools bool
		last                api.ChatResponse
	)
	err := s.backend.Chat(ctx, areq, func(r api.ChatResponse) error {
		if !sentRole {
			sentRole = true
			empty := ""
			if err := send(chatDelta{Role: "assistant", Content: &empty}, nil); err != nil {
				return err
			}
		}
		d := chatDelta{}
		if r.Message.Content != "" {
			content := r.Message.Content
			d.Content = &content
		}
		if len(r.Message.ToolCalls) > 0 {
			d.ToolCalls = openai.ToToolCalls(r.Message.ToolCalls)
			sentTools = true
		}
		if d.Content != nil || d.ToolCalls != nil {
			if err := send(d, nil); err != nil {
				return err
			}
		}
		last = r
		return nil
	})
	sse.Stop()
	if err != nil {
		if !sse.Started() {
			return err
		}
		return s.streamError(c, sse, err)
	}
	reason := finishReason(last.DoneReason, sentTools)
	if err := send(chatDelta{}, &reason); err != nil {
		return nil // the client is gone
	}
	if includeUsage {
		u := usageOf(last.Metrics)
		chunk.Choices = []chatChunkChoice{}
		chunk.Usage = &u
		if err := sse.Event(&chunk); err != nil {
			return nil
		}
	}
	_ = sse.Done()
	return nil
}

// streamError ends a stream that has started with an error event.
func (s *Server) streamError(c *gin.Context, sse *sseWriter, err error) error {
	if c.Request.Context().Err() != nil {
		return nil // the client went away; its backend request is cancelled
	}
	ae := toAPIError(err)
	s.logError(c, err, ae)
	_ = sse.ErrorEvent(ae)
	return nil
}
