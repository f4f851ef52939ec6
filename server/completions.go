package server

import (
	"context"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
)

// completionRequest is the body of POST /v1/completions. Prompt may be a
// string or an array holding one string; the fields upstream ignores but
// Warden must refuse (n, best_of, echo) are checked here.
type completionRequest struct {
	openai.CompletionRequest
	Prompt      any      `json:"prompt"`
	Temperature *float64 `json:"temperature"`
	TopP        *float64 `json:"top_p"`
	N           *int     `json:"n"`
	BestOf      *int     `json:"best_of"`
	Echo        bool     `json:"echo"`
}

func (r *completionRequest) validate() (string, error) {
	if r.Model == "" {
		return "", missing("model")
	}
	var prompt string
	switch p := r.Prompt.(type) {
	case nil:
		return "", missing("prompt")
	case string:
		prompt = p
	case []any:
		if len(p) != 1 {
			return "", invalidf("prompt", "Invalid 'prompt': only one prompt per request is supported, got %d.", len(p))
		}
		s, ok := p[0].(string)
		if !ok {
			return "", invalidf("prompt", "Invalid 'prompt': token arrays are not supported; send text.")
		}
		prompt = s
	default:
		return "", invalidf("prompt", "Invalid type for 'prompt': expected a string or an array of strings.")
	}
	if err := validateSampling(r.Temperature, r.TopP, r.N); err != nil {
		return "", err
	}
	if r.BestOf != nil && *r.BestOf != 1 {
		return "", invalidf("best_of", "Invalid 'best_of': only 1 is supported, got %d.", *r.BestOf)
	}
	if r.Echo {
		return "", invalidf("echo", "Invalid 'echo': echo is not supported.")
	}
	if r.MaxTokens != nil && *r.MaxTokens < 1 {
		return "", invalidf("max_tokens", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got %d instead.", *r.MaxTokens)
	}
	for _, p := range []struct {
		name string
		v    float32
	}{{"presence_penalty", r.PresencePenalty}, {"frequency_penalty", r.FrequencyPenalty}} {
		if p.v < -2 || p.v > 2 {
			return "", invalidf(p.name, "Invalid '%s': expected a value between -2 and 2, got %g.", p.name, p.v)
		}
	}
	if r.Logprobs != nil && (*r.Logprobs < 0 || *r.Logprobs > 5) {
		return "", invalidf("logprobs", "Invalid 'logprobs': expected a value between 0 and 5, got %d.", *r.Logprobs)
	}
	return prompt, validateStop(r.Stop)
}

func (r *completionRequest) toAPI(backendModel, prompt string, outputCap int) (*api.GenerateRequest, error) {
	in := r.CompletionRequest
	in.Model = backendModel
	in.Prompt = prompt
	in.DebugRenderOnly = false
	if r.Temperature != nil {
		t := float32(*r.Temperature)
		in.Temperature = &t
	}
	if r.TopP != nil {
		in.TopP = float32(*r.TopP)
	}
	in.MaxTokens = &outputCap
	out, err := openai.FromCompleteRequest(in)
	if err != nil {
		return nil, invalidf("", "Invalid request: %v.", err)
	}
	no := false
	out.Truncate = &no
	return &out, nil
}

func (s *Server) completions(c *gin.Context) error {
	var req completionRequest
	if err := decodeJSON(c.Request.Body, &req); err != nil {
		return err
	}
	prompt, err := req.validate()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	defer cancel()
	m, err := s.useModel(ctx, c, req.Model)
	if err != nil {
		return err
	}
	texts := []string{prompt, req.Suffix}
	fr, err := s.filterTexts(c, "prompt", texts)
	if err != nil {
		return err
	}
	prompt, req.Suffix = texts[0], texts[1]
	adm, err := s.admit(c, estimateText(prompt, req.Suffix), req.MaxTokens, false)
	if err != nil {
		return err
	}
	defer adm.settle(0, 0, false)
	adm.capChars(fr)
	areq, err := req.toAPI(m.Name, prompt, adm.outputCap)
	if err != nil {
		return err
	}
	if adm.charCap > 0 {
		areq.Stream = &streamOn
	}
	out := textCompletion{
		ID:                "cmpl-" + requestID(c),
		Object:            "text_completion",
		Created:           time.Now().Unix(),
		Model:             req.Model,
		SystemFingerprint: systemFingerprint,
		Choices:           make([]textChoice, 1),
	}
	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.streamCompletion(ctx, c, &out, areq, adm, newAnswer(fr, adm), includeUsage)
	}
	release, err := s.slot(ctx, c, m.Name, adm)
	if err != nil {
		return err
	}
	defer release()

	var (
		text strings.Builder
		last api.GenerateResponse
		ans  = newAnswer(fr, adm)
	)
	err = s.backend.Generate(ctx, areq, func(r api.GenerateResponse) error {
		noteFirst(c)
		last = r
		piece, err := ans.add(r.Response)
		text.WriteString(piece)
		return err
	})
	release() // the slot is free once the backend is done, before the audit commit
	u, cut := s.outcome(ctx, adm, err, last.Metrics, ans.pieces)
	if err != nil && !cut {
		return err
	}
	text.WriteString(ans.end())
	reason := ans.reason(finishReason(last.DoneReason, false))
	out.Choices[0] = textChoice{Text: text.String(), FinishReason: &reason}
	out.Usage = &u
	return s.respond(c, &out, outcome{usage: u, finishReason: reason})
}

func (s *Server) streamCompletion(ctx context.Context, c *gin.Context, chunk *textCompletion, areq *api.GenerateRequest, adm *admission, ans *answer, includeUsage bool) error {
	sse := newSSE(c.Writer, s.cfg.KeepAliveInterval)
	defer sse.Stop()

	release, err := s.slot(ctx, c, areq.Model, adm)
	if err != nil {
		return s.failStream(c, sse, err)
	}
	defer release()

	var (
		last      api.GenerateResponse
		delivered strings.Builder
	)
	err = s.backend.Generate(ctx, areq, func(r api.GenerateResponse) error {
		noteFirst(c)
		last = r
		piece, cut := ans.add(r.Response)
		delivered.WriteString(piece)
		if piece != "" {
			chunk.Choices[0] = textChoice{Text: piece}
			if err := sse.Event(chunk); err != nil {
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
	return s.endStream(c, sse, err, cut, u, ans.reason(finishReason(last.DoneReason, false)), delivered.String(), func(reason string) error {
		if tail != "" {
			chunk.Choices[0] = textChoice{Text: tail}
			if err := sse.Event(chunk); err != nil {
				return err
			}
		}
		chunk.Choices[0] = textChoice{FinishReason: &reason}
		if err := sse.Event(chunk); err != nil || !includeUsage {
			return err
		}
		chunk.Choices = []textChoice{}
		chunk.Usage = &u
		return sse.Event(chunk)
	})
}
