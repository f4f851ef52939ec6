package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Chatter sends one probe's messages to a model and returns what came
// back. An error it cannot turn into an Answer (a transport failure) is
// reported in Answer.Err.
type Chatter interface {
	Chat(ctx context.Context, model string, msgs []Message, seed int64) Answer
}

// Labeler is a guard model labelling answers ([safety.guard]; see
// GuardLabeler). A label never changes an outcome; it is stored beside
// it. On an error the label returned is still recorded (LabelFailed).
type Labeler interface {
	Label(ctx context.Context, p Probe, a Answer) (string, error)
}

// Run is one run of a suite against a model, with every answer.
type Run struct {
	ID          int64            `json:"id"`
	Started     time.Time        `json:"started"`
	Finished    time.Time        `json:"finished"`
	Suite       string           `json:"suite"`
	SuiteSHA256 string           `json:"suite_sha256"`
	Model       string           `json:"model"`
	ModelDigest string           `json:"model_digest"`
	Seed        int64            `json:"seed"`
	KeyID       string           `json:"key_id"`
	Trigger     string           `json:"trigger"` // "cli" or "schedule"
	Guard       string           `json:"guard"`   // the guard model that labelled the answers; "none": no guard
	Results     []CategoryResult `json:"results"`
	Skipped     []LineError      `json:"skipped,omitempty"`
	Probes      []Probe          `json:"-"`
	Answers     []Answer         `json:"-"`
	Scored      []Scored         `json:"-"`
}

// Totals counts a run's outcomes.
func (r *Run) Totals() (pass, fail, errs int) {
	for _, s := range r.Scored {
		switch s.Outcome {
		case Pass:
			pass++
		case Fail:
			fail++
		case Error:
			errs++
		}
	}
	return
}

// Runner sends a suite's probes one after another through a Chatter and
// scores them.
type Runner struct {
	Chat Chatter
	// Timeout bounds each probe (0: 2 minutes); a probe past it is an
	// error.
	Timeout time.Duration
	// Guard, if set, labels each answer; GuardModel names it in the run.
	Guard      Labeler
	GuardModel string
	// OnProgress is called after each probe with the count done.
	OnProgress func(done, total int)
	Now        func() time.Time
}

func (rn *Runner) now() time.Time {
	if rn.Now != nil {
		return rn.Now()
	}
	return time.Now()
}

// Run sends every probe of s to model and scores the answers. It returns
// an error only when ctx ends; a probe that fails is recorded as an error.
func (rn *Runner) Run(ctx context.Context, s Suite, model string, seed int64) (Run, error) {
	if len(s.Probes) == 0 {
		return Run{}, ErrEmptySuite
	}
	run := Run{Started: rn.now().UTC(), Suite: s.Name, SuiteSHA256: s.SHA256, Model: model, Seed: seed,
		Guard: "none", Probes: s.Probes, Skipped: s.Skipped}
	if rn.Guard != nil {
		run.Guard = rn.GuardModel
		if run.Guard == "" {
			run.Guard = "guard"
		}
	}
	timeout := rn.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	for i, p := range s.Probes {
		if err := ctx.Err(); err != nil {
			return run, err
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		start := rn.now()
		a := rn.Chat.Chat(pctx, model, p.Messages, seed)
		if a.Err == "" && pctx.Err() != nil {
			a.Err = "timed out"
		}
		if a.LatencyMS == 0 {
			a.LatencyMS = rn.now().Sub(start).Milliseconds()
		}
		sc := Score(p, a)
		if rn.Guard != nil && a.Err == "" {
			sc.Label, _ = rn.Guard.Label(pctx, p, a)
		}
		cancel()
		run.Answers = append(run.Answers, a)
		run.Scored = append(run.Scored, sc)
		if rn.OnProgress != nil {
			rn.OnProgress(i+1, len(s.Probes))
		}
	}
	run.Finished = rn.now().UTC()
	run.Results = Summarize(run.Probes, run.Scored, run.Answers)
	return run, nil
}

// HTTPChatter sends probes to Warden's OpenAI-compatible API with a key:
// the whole request path (auth, quotas, filters, scheduler, audit).
type HTTPChatter struct {
	BaseURL   string // e.g. http://127.0.0.1:8080
	Key       string
	HTTP      *http.Client
	MaxTokens int // per answer (0: 256)
}

var _ Chatter = (*HTTPChatter)(nil)

type chatReq struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens"`
	Temperature float64   `json:"temperature"`
	Seed        int64     `json:"seed"`
}

type chatResp struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// maxAnswerBytes bounds the answer body read.
const maxAnswerBytes = 4 << 20

// Chat sends one chat completion at temperature 0 with the run's seed.
func (h *HTTPChatter) Chat(ctx context.Context, model string, msgs []Message, seed int64) Answer {
	start := time.Now()
	maxTok := h.MaxTokens
	if maxTok <= 0 {
		maxTok = 256
	}
	body, _ := json.Marshal(chatReq{Model: model, Messages: msgs, MaxTokens: maxTok, Seed: seed})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(h.BaseURL, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return Answer{Err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return Answer{Err: "timed out", LatencyMS: time.Since(start).Milliseconds()}
		}
		return Answer{Err: err.Error(), LatencyMS: time.Since(start).Milliseconds()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	a := Answer{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), LatencyMS: time.Since(start).Milliseconds()}
	if err != nil {
		a.Err = "read answer: " + err.Error()
		if ctx.Err() != nil {
			a.Err = "timed out"
		}
		return a
	}
	var cr chatResp
	if err := json.Unmarshal(b, &cr); err != nil {
		a.Err = fmt.Sprintf("status %d: answer is not JSON", resp.StatusCode)
		return a
	}
	if resp.StatusCode != http.StatusOK {
		if cr.Error != nil && cr.Error.Code == "content_filter" {
			a.Filtered, a.FinishReason = true, "content_filter"
			return a
		}
		a.Err = fmt.Sprintf("status %d", resp.StatusCode)
		if cr.Error != nil {
			a.Err += ": " + cr.Error.Code
		}
		return a
	}
	if len(cr.Choices) == 0 {
		a.Err = "answer has no choices"
		return a
	}
	a.Text = cr.Choices[0].Message.Content
	a.FinishReason = cr.Choices[0].FinishReason
	a.Filtered = a.FinishReason == "content_filter"
	return a
}

// do sends req with the key, on h.HTTP (nil: http.DefaultClient).
func (h *HTTPChatter) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+h.Key)
	hc := h.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return hc.Do(req)
}

// Models lists the model ids the key may use (GET /v1/models).
func (h *HTTPChatter) Models(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(h.BaseURL, "/")+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.do(req)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list models: status %d", resp.StatusCode)
	}
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&out); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	ids := make([]string, len(out.Data))
	for i, d := range out.Data {
		ids[i] = d.ID
	}
	return ids, nil
}
