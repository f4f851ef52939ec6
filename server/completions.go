package server

import (
	"context"
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
	User        string   `json:"user"`

	prompt string // the prompt as one string, once checked
}

func (r *completionRequest) modelName() string { return r.Model }

func (r *completionRequest) bodyUser() string { return r.User }

func (r *completionRequest) check() (err error) {
	r.prompt, err = r.validate()
	return err
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
	out.Truncate = &truncateOff
	return &out, nil
}

func (s *Server) completions(c *gin.Context) error {
	var req completionRequest
	return s.pipeline(c, &req, func(p *pipe) error {
		texts := []string{req.prompt, req.Suffix}
		if err := p.filterTexts("prompt", texts); err != nil {
			return err
		}
		prompt := texts[0]
		req.Suffix = texts[1]
		if err := p.admit(estimateText(prompt, req.Suffix)+s.models.promptOverhead(p.ctx, p.model), req.MaxTokens, false); err != nil {
			return err
		}
		areq, err := req.toAPI(p.model.Name, prompt, p.adm.outputCap)
		if err != nil {
			return err
		}
		if p.mustStream() {
			areq.Stream = &streamOn
		}
		run := func(ctx context.Context, fn func(piece) error) error {
			return s.backend.Generate(ctx, areq, func(r api.GenerateResponse) error { return fn(generatePiece(r)) })
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
			return p.stream(run, &completionStream{chunk: &out, includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage})
		}
		return p.whole(run, func(text string, _ []api.ToolCall, res result) any {
			out.Choices[0] = textChoice{Text: text, FinishReason: &res.reason}
			out.Usage = &res.usage
			return &out
		})
	})
}

// completionStream is OpenAI's text completion stream: text chunks, a
// chunk with the finish reason, the usage chunk when asked for, [DONE].
type completionStream struct {
	chunk        *textCompletion
	includeUsage bool
}

func (cs *completionStream) delta(sse *sseWriter, text string, _ []api.ToolCall) error {
	if text == "" {
		return nil
	}
	cs.chunk.Choices[0] = textChoice{Text: text}
	return sse.Event(cs.chunk)
}

func (cs *completionStream) final(sse *sseWriter, tail string, res result) error {
	if err := cs.delta(sse, tail, nil); err != nil {
		return err
	}
	reason := res.reason
	cs.chunk.Choices[0] = textChoice{FinishReason: &reason}
	if err := sse.Event(cs.chunk); err != nil || !cs.includeUsage {
		return err
	}
	cs.chunk.Choices = []textChoice{}
	cs.chunk.Usage = &res.usage
	return sse.Event(cs.chunk)
}
