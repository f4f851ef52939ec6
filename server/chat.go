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
	m, err := s.useModel(ctx, c, req.Model)
	if err != nil {
		return err
	}
	fr, err := s.filterChat(c, &req)
	if err != nil {
		return err
	}
	adm, err := s.admit(c, estimateChat(&req), req.maxTokens(), false)
	if err != nil {
		return err
	}
	defer adm.settle(0, 0, false) // charged in full unless settled with counts
	adm.capChars(fr)
	areq, err := req.toAPI(m.Name, adm.outputCap)
	if err != nil {
		return err
	}
	if adm.charCap > 0 {
		// The cap is enforced between tokens, so the backend must stream.
		areq.Stream = &streamOn
	}
	id := "chatcmpl-" + requestID(c)
	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.streamChat(ctx, c, id, req.Model, areq, adm, newAnswer(fr, adm), includeUsage)
	}
	release, err := s.slot(ctx, c, m.Name, adm)
	if err != nil {
		return err
	}
	defer release()

	var (
		text      strings.Builder
		toolCalls []openai.ToolCall
		last      api.ChatResponse
		ans       = newAnswer(fr, adm)
	)
	err = s.backend.Chat(ctx, areq, func(r api.ChatResponse) error {
		noteFirst(c)
		last = r
		piece, err := ans.add(r.Message.Content)
		text.WriteString(piece)
		if err == nil && len(r.Message.ToolCalls) > 0 {
			if err = ans.tools(r.Message.ToolCalls); err == nil {
				toolCalls = append(toolCalls, openai.ToToolCalls(r.Message.ToolCalls)...)
			}
		}
		return err
	})
	release() // the slot is free once the backend is done, before the audit commit
	u, cut := s.outcome(ctx, adm, err, last.Metrics, ans.pieces)
	if err != nil && !cut {
		return err
	}
	text.WriteString(ans.end())
	reason := ans.reason(finishReason(last.DoneReason, len(toolCalls) > 0))
	content := text.String()
	msg := chatMessage{Role: "assistant", Content: &content, ToolCalls: toolCalls}
	if len(toolCalls) > 0 && content == "" {
		msg.Content = nil
	}
	return s.respond(c, chatCompletion{
		ID:                id,
		Object:            "chat.completion",
		Created:           time.Now().Unix(),
		Model:             req.Model,
		SystemFingerprint: systemFingerprint,
		Choices:           []chatChoice{{Message: msg, FinishReason: reason}},
		Usage:             u,
	}, outcome{usage: u, finishReason: reason})
}

// outcome settles the request's reservation and returns the usage to report.
// cut is true when the answer's own limits ended it (the character cap, a
// safety block): the backend call was cancelled before its counts, so the
// prompt is charged at its estimate and the output at the pieces received
// (one token each).
func (s *Server) outcome(ctx context.Context, adm *admission, err error, m api.Metrics, pieces int) (u usage, cut bool) {
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

// streamChat sends the answer as OpenAI's chunk stream: a first delta with
// the role, content (and tool call) deltas, an empty delta with the finish
// reason, the usage chunk when asked for, and [DONE].
func (s *Server) streamChat(ctx context.Context, c *gin.Context, id, modelName string, areq *api.ChatRequest, adm *admission, ans *answer, includeUsage bool) error {
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

	release, err := s.slot(ctx, c, areq.Model, adm)
	if err != nil {
		return s.failStream(c, sse, err)
	}
	defer release()

	var (
		sentRole, sentTools bool
		last                api.ChatResponse
		delivered           strings.Builder
	)
	err = s.backend.Chat(ctx, areq, func(r api.ChatResponse) error {
		noteFirst(c)
		last = r
		if !sentRole {
			sentRole = true
			empty := ""
			if err := send(chatDelta{Role: "assistant", Content: &empty}, nil); err != nil {
				return err
			}
		}
		piece, cut := ans.add(r.Message.Content)
		delivered.WriteString(piece)
		d := chatDelta{}
		if piece != "" {
			d.Content = &piece
		}
		if cut == nil && len(r.Message.ToolCalls) > 0 {
			if cut = ans.tools(r.Message.ToolCalls); cut == nil {
				d.ToolCalls = openai.ToToolCalls(r.Message.ToolCalls)
				sentTools = true
			}
		}
		if d.Content != nil || d.ToolCalls != nil {
			if err := send(d, nil); err != nil {
				return err
			}
		}
		return cut
	})
	release()
	sse.Stop()
	u, cut := s.outcome(ctx, adm, err, last.Metrics, ans.pieces)
	var tail string
	if err == nil {
		tail = ans.end()
		delivered.WriteString(tail)
	}
	return s.endStream(c, sse, err, cut, u, ans.reason(finishReason(last.DoneReason, sentTools)), delivered.String(), func(reason string) error {
		if tail != "" {
			if err := send(chatDelta{Content: &tail}, nil); err != nil {
				return err
			}
		}
		if err := send(chatDelta{}, &reason); err != nil || !includeUsage {
			return err
		}
		chunk.Choices = []chatChunkChoice{}
		chunk.Usage = &u
		return sse.Event(&chunk)
	})
}

// endStream finishes a stream after its backend call returned err. An
// error becomes the status (when nothing was sent yet) or an error event;
// otherwise the completion record is committed, final sends the last
// events (finish reason, usage), and [DONE] ends the stream. cut means
// the answer's own limits ended it (reason says which).
func (s *Server) endStream(c *gin.Context, sse *sseWriter, err error, cut bool, u usage, reason, text string, final func(reason string) error) error {
	if err != nil && !cut {
		return s.failStream(c, sse, err)
	}
	if err := s.complete(c, outcome{status: http.StatusOK, usage: u, finishReason: reason, response: text}); err != nil {
		return s.streamError(c, sse, err)
	}
	if final(reason) == nil { // else the client is gone
		_ = sse.Done()
	}
	return nil
}

// failStream ends a stream with err: as the answer's status when nothing
// was sent yet, else as an error event.
func (s *Server) failStream(c *gin.Context, sse *sseWriter, err error) error {
	sse.Stop()
	if !sse.Started() {
		return err
	}
	return s.streamError(c, sse, err)
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
