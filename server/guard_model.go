package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/guard"
)

// The guard-model stage (safety.guard; not the shedding and bans of
// guard.go). When a guard model is configured, the prompt, as the inline
// filters left it, is judged by the model once the request is admitted
// (so a key's request and rate limits bound the guard calls it causes),
// before its request record; the finished answer is judged before it is
// released. Each call waits for a slot of the guard model in the
// scheduler under the request's key, like other work, and is not charged
// to the key's quota. Verdicts join the request's safety decisions: a
// category the key's profile blocks refuses the prompt (400
// content_filter) or withholds the answer (finish reason content_filter).
// A call that times out, fails or answers something that is not a
// verdict applies the failure mode: closed refuses (503 for a prompt, the
// content_filter ending for an answer), open lets the text pass; either
// is recorded as guard_failure (block or flag) and logged once per burst.
//
// A streamed answer the guard judges is held back whole: its events go
// out once the guard has passed it (keep-alive comments meanwhile), since
// text already sent cannot be taken back.

// guardOutputTokens bounds a guard's answer: a verdict is a few tokens.
const guardOutputTokens = guard.MaxOutputTokens

// errGuardUnavailable refuses a prompt the guard model could not judge,
// under failure = "closed".
var errGuardUnavailable = &apiError{
	Status:     http.StatusServiceUnavailable,
	Type:       typeServer,
	Code:       "safety_guard_unavailable",
	Message:    "The safety guard model gave no verdict on the prompt, so it was not sent to the model; retry later.",
	RetryAfter: 5,
}

// guardMetrics are the guard stage's series.
type guardMetrics struct {
	calls    *prometheus.CounterVec   // by stage and verdict (safe, unsafe, failed)
	failures *prometheus.CounterVec   // by stage and reason
	latency  *prometheus.HistogramVec // by stage
}

func newGuardMetrics(m *Metrics) *guardMetrics {
	if m == nil {
		return nil
	}
	g := &guardMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_guard_calls_total", Help: "Guard model calls, by stage (prompt, answer) and verdict (safe, unsafe, failed).",
		}, []string{"stage", "verdict"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_guard_failures_total", Help: "Guard model calls that gave no verdict, by stage and reason (timeout, backend, unreadable).",
		}, []string{"stage", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "warden_guard_duration_seconds", Help: "Time a guard model call took, its wait for a slot included, by stage.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"stage"}),
	}
	g.calls = register(m.Registry, g.calls)
	g.failures = register(m.Registry, g.failures)
	g.latency = register(m.Registry, g.latency)
	return g
}

// register registers c, or returns the collector already registered in
// its place (two servers on one registry share the series).
func register[C prometheus.Collector](r *prometheus.Registry, c C) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return c
}

// guardStage is the pipeline's view of the guard model.
type guardStage struct {
	cfg     *guard.Config
	cats    []string // every category it can report
	metrics *guardMetrics
}

func newGuardStage(cfg *guard.Config, m *Metrics) *guardStage {
	if cfg == nil {
		return nil
	}
	return &guardStage{cfg: cfg, cats: cfg.AllCategories(), metrics: newGuardMetrics(m)}
}

// judge names the guard in the request's findings.
func (g *guardStage) judge() string { return "guard:" + g.cfg.Model }

// acts reports whether the guard judges dir under fr's profile: it is on
// for that stage and the profile acts on one of its categories.
func (g *guardStage) acts(fr *filter.Request, dir filter.Direction) bool {
	if g == nil || fr == nil {
		return false
	}
	if (dir == filter.Input && !g.cfg.Prompt) || (dir == filter.Output && !g.cfg.Answer) {
		return false
	}
	for _, c := range g.cats {
		if fr.Profile().Action(dir, c) != filter.Allow {
			return true
		}
	}
	return false
}

// guardChat is a chat prompt as the guard model reads it: the texts of
// each message, assistant messages as the assistant's and every other
// role as the user's, consecutive messages of one side joined.
func guardChat(msgs []openai.Message) []api.Message {
	var out []api.Message
	for i := range msgs {
		var parts []string
		for _, t := range messageTexts(&msgs[i]) {
			if t.text != "" {
				parts = append(parts, t.text)
			}
		}
		out = append(out, api.Message{Role: msgs[i].Role, Content: strings.Join(parts, guard.Separator)})
	}
	return guard.Conversation(out)
}

// guardTexts is a completion or embedding prompt as the guard model reads
// it: one user message.
func guardTexts(texts []string) []api.Message {
	var parts []string
	for _, t := range texts {
		if t != "" {
			parts = append(parts, t)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return []api.Message{{Role: "user", Content: strings.Join(parts, textSeparator)}}
}

// errGuardTimeout is a guard call that ran out of its timeout.
var errGuardTimeout = errors.New("guard model call timed out")

// callGuard runs the guard model on msgs within its timeout, on a slot of the
// guard model under the request's key, and returns the categories of its
// verdict (none: safe). ctx is the request's: when it ends, so does the
// call, and the caller reports that rather than a guard failure.
func (s *Server) callGuard(parent context.Context, c *gin.Context, stage string, msgs []api.Message) ([]string, error) {
	g := s.guard
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(parent, g.cfg.Timeout, errGuardTimeout)
	defer cancel()
	var cost int64
	for _, m := range msgs {
		cost += int64(len(m.Content))/4 + perMessageTokens
	}
	release := func() {}
	if s.cfg.Queue != nil {
		r, _, err := s.cfg.Queue.AcquireUser(ctx, g.cfg.Model, principal(c).KeyID, userOf(c), cost+guardOutputTokens)
		if err != nil {
			return nil, s.guardDone(parent, ctx, stage, start, nil, err)
		}
		release = r
	}
	defer release()
	v, err := g.cfg.Ask(ctx, s.backend, msgs)
	release()
	cats := g.cfg.Verdicts(v)
	return cats, s.guardDone(parent, ctx, stage, start, cats, err)
}

// guardDone counts a guard call and returns its error: the timeout's
// cause when the guard's own deadline (ctx's) passed. A call the request
// itself ended (parent: the client left, the server cut it) is not
// counted: it is no guard failure.
func (s *Server) guardDone(parent, ctx context.Context, stage string, start time.Time, cats []string, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errGuardTimeout) {
		err = errGuardTimeout
	}
	m := s.guard.metrics
	if m == nil || parent.Err() != nil {
		return err
	}
	m.latency.WithLabelValues(stage).Observe(time.Since(start).Seconds())
	verdict := "safe"
	switch {
	case err != nil:
		verdict = "failed"
		reason := "backend"
		switch {
		case errors.Is(err, errGuardTimeout):
			reason = "timeout"
		case errors.Is(err, guard.ErrUnreadable):
			reason = "unreadable"
		}
		m.failures.WithLabelValues(stage, reason).Inc()
	case len(cats) > 0:
		verdict = "unsafe"
	}
	m.calls.WithLabelValues(stage, verdict).Inc()
	return err
}

// guardFailed applies the failure mode to a guard call that gave no
// verdict: it records guard_failure (block when closed, flag when open),
// logs it once per burst, and reports whether the text must be refused.
func (s *Server) guardFailed(c *gin.Context, fr *filter.Request, dir filter.Direction, stage string, err error) bool {
	mode, act := "closed", filter.Block
	if s.guard.cfg.FailOpen {
		mode, act = "open", filter.Flag
	}
	fr.Note(dir, guard.CatFailure, s.guard.judge(), act)
	s.repeated.Log(c.Request.Context(), s.log, slog.LevelWarn, "safety guard model gave no verdict",
		"stage", stage, "model", s.guard.cfg.Model, "failure", mode, "request_id", requestID(c), "err", err)
	return act == filter.Block
}

// verdicts records a guard's categories under the request's profile and
// returns those it blocks; a safe verdict is recorded as guard_passed.
func (s *Server) verdicts(fr *filter.Request, dir filter.Direction, cats []string) []string {
	if len(cats) == 0 {
		fr.Note(dir, guard.CatPassed, s.guard.judge(), filter.Allow)
		return nil
	}
	var blocked []string
	for _, cat := range cats {
		if fr.Judge(dir, cat, s.guard.judge()) == filter.Block {
			blocked = append(blocked, cat)
		}
	}
	return blocked
}

// guardPrompt judges the prompt the filter step kept for the guard (see
// filterChat and filterTexts), after admission: a blocked prompt is
// refused like the inline filters' blocks; a guard failure under
// failure = "closed" with 503.
func (p *pipe) guardPrompt() error {
	if p.guardIn == nil || !p.s.guard.acts(p.filter, filter.Input) {
		return nil
	}
	cats, err := p.s.callGuard(p.ctx, p.c, "prompt", p.guardIn)
	if p.ctx.Err() != nil {
		return p.cause(p.ctx.Err()) // the client left, or the request's own deadline passed
	}
	if err != nil {
		if p.s.guardFailed(p.c, p.filter, filter.Input, "prompt", err) {
			return errGuardUnavailable
		}
		return nil
	}
	if blocked := p.s.verdicts(p.filter, filter.Input, cats); len(blocked) > 0 {
		return contentFilterError(p.guardParam, blocked)
	}
	return nil
}

// guardsAnswer reports whether the request's answer goes to the guard
// before it is released.
func (p *pipe) guardsAnswer() bool {
	return p.guardIn != nil && p.s.guard.acts(p.filter, filter.Output)
}

// guardAnswer judges a finished answer (text and tool calls) with the
// prompt it answers, and reports whether it must be withheld; then res
// ends as content_filter. An answer the inline filter already ended is
// not judged again. The error is the request's own ending (client gone,
// deadline), never the guard's.
func (p *pipe) guardAnswer(text string, calls []api.ToolCall, res *result) (bool, error) {
	if !p.guardsAnswer() || res.reason == "content_filter" {
		return false, nil
	}
	answer := deliveredContent(text, calls)
	if answer == "" {
		return false, nil
	}
	msgs := append(append([]api.Message(nil), p.guardIn...), api.Message{Role: "assistant", Content: answer})
	cats, err := p.s.callGuard(p.ctx, p.c, "answer", msgs)
	if p.ctx.Err() != nil {
		return false, p.cause(p.ctx.Err())
	}
	withhold := false
	if err != nil {
		withhold = p.s.guardFailed(p.c, p.filter, filter.Output, "answer", err)
	} else {
		withhold = len(p.s.verdicts(p.filter, filter.Output, cats)) > 0
	}
	if withhold {
		res.reason, res.tail = "content_filter", ""
	}
	return withhold, nil
}

// heldAnswer is a streamed answer held back for the guard: what the
// filter released, joined, and the backend pieces it came in.
type heldAnswer struct {
	text   strings.Builder
	calls  []api.ToolCall
	pieces int
}

func (h *heldAnswer) add(text string, calls []api.ToolCall) {
	h.text.WriteString(text)
	h.calls = append(h.calls, calls...)
	h.pieces++
}

// releaseHeld judges a held stream's answer and sends it as one delta if
// the guard passes it; else nothing of it goes out and the answer ends as
// content_filter.
func (p *pipe) releaseHeld(h *heldAnswer, shape streamShape, res *result) error {
	text := h.text.String()
	withhold, err := p.guardAnswer(text+res.tail, h.calls, res)
	if err != nil || withhold {
		return err
	}
	if err := shape.delta(p.sse, text, h.calls); err != nil {
		return err
	}
	return p.sse.commit(p.ctx, deliveredContent(text, h.calls), h.pieces)
}
