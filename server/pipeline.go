package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/filter"
)

// The request pipeline. Every route that reaches the model takes the same
// steps in the same order, and the order is what makes it correct:
//
//	decode → validate            (the route: its wire types)
//	begin: deadline → model      (403 before anything is scanned or charged)
//	filter the prompt            (redact in place; a block is 400, nothing admitted)
//	admit: caps and quotas       (rate headers go out before a stream starts)
//	build the backend request    (the route: with the admitted output cap)
//	slot → backend               (each piece through the filter and caps)
//	release the slot             (before the audit commit: it needs no slot)
//	settle once → record → respond
//
// A route writes only decode, validate, its backend request and the shape
// of its answer (a whole JSON body, or its chunk stream); begin, filter,
// admit and the finishers (whole, stream, embed) hold the rest.

// modelRequest is a route's request body: decoded, it checks itself
// (naming the first bad field) and names the model it asks for.
type modelRequest interface {
	check() error
	modelName() string
}

// pipeline decodes and checks a route's request, begins its pipeline and
// hands it to route, which filters, admits and answers; the pipe's close
// follows whatever route returns.
func (s *Server) pipeline(c *gin.Context, req modelRequest, route func(*pipe) error) error {
	if err := decodeJSON(c.Request.Body, req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	p, err := s.begin(c, req.modelName())
	defer p.close()
	if err != nil {
		return err
	}
	return route(p)
}

// pipe is one request on its way through the pipeline.
type pipe struct {
	s      *Server
	c      *gin.Context
	ctx    context.Context // the request's, bounded by the request timeout
	cancel context.CancelFunc
	model  modelInfo
	filter *filter.Request // nil: no safety filter
	adm    *admission      // nil until admitted
	ans    *answer
}

// begin starts the pipeline for a request naming model: it bounds the
// request by its deadline and resolves the model the key must be allowed
// to use. The caller defers close.
func (s *Server) begin(c *gin.Context, model string) (*pipe, error) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout)
	p := &pipe{s: s, c: c, ctx: ctx, cancel: cancel}
	m, err := s.useModel(ctx, c, model)
	if err != nil {
		return p, err
	}
	p.model = m
	return p, nil
}

// close ends the request: a reservation not settled with real counts by
// then is charged in full, and the deadline's resources are freed.
func (p *pipe) close() {
	p.adm.settle(0, 0, false)
	p.cancel()
}

// filterChat scans the chat request's texts on the way in (see
// Server.filterChat); a blocked prompt is refused here.
func (p *pipe) filterChat(req *chatRequest) error {
	fr, err := p.s.filterChat(p.c, req)
	p.filter = fr
	return err
}

// filterTexts scans prompt texts in place; param names them in a refusal.
func (p *pipe) filterTexts(param string, texts []string) error {
	fr, err := p.s.filterTexts(p.c, param, texts)
	p.filter = fr
	return err
}

// admit holds the request to its key's caps and quotas: promptTokens is
// its estimated prompt, maxTokens the output it asked for (nil: not
// stated). The answer's filter and character cap are set up here.
func (p *pipe) admit(promptTokens int64, maxTokens *int, embedding bool) error {
	adm, err := p.s.admit(p.c, promptTokens, maxTokens, embedding)
	if err != nil {
		return err
	}
	if err := p.s.commitRequest(p.c); err != nil { // the request record, before the backend
		adm.settle(0, 0, true) // nothing served: nothing charged
		return err
	}
	adm.capChars(p.filter)
	p.adm = adm
	p.ans = newAnswer(p.filter, adm)
	return nil
}

// mustStream reports whether the backend has to stream whatever the
// client asked: a character cap is enforced between tokens.
func (p *pipe) mustStream() bool { return p.adm.charCap > 0 }

// piece is one response of the backend, whatever the route.
type piece struct {
	text       string
	tools      []api.ToolCall
	doneReason string
	metrics    api.Metrics
}

func chatPiece(r api.ChatResponse) piece {
	return piece{text: r.Message.Content, tools: r.Message.ToolCalls, doneReason: r.DoneReason, metrics: r.Metrics}
}

func generatePiece(r api.GenerateResponse) piece {
	return piece{text: r.Response, doneReason: r.DoneReason, metrics: r.Metrics}
}

// runFunc makes the route's backend call, passing every response to fn.
type runFunc func(ctx context.Context, fn func(piece) error) error

// result is how an answer ended.
type result struct {
	usage  usage
	reason string // the finish reason the client gets
	tail   string // what the filter still held when the backend finished
}

// generate waits for a slot, runs the backend call and passes each piece
// through the answer's filter and caps to deliver, as it is released
// (deliver also sees pieces that release nothing). The slot is free
// before it returns; the reservation is settled with the real counts,
// or, for an answer its own limits cut, with the pieces received.
func (p *pipe) generate(run runFunc, deliver func(text string, calls []api.ToolCall) error) (result, error) {
	release, err := p.s.slot(p.ctx, p.c, p.model.Name, p.adm)
	if err != nil {
		return result{}, err
	}
	defer release()
	var (
		last  piece
		tools bool
	)
	err = run(p.ctx, func(r piece) error {
		noteFirst(p.c)
		last = r
		text, cut := p.ans.add(r.text)
		var calls []api.ToolCall
		if cut == nil && len(r.tools) > 0 {
			if cut = p.ans.tools(r.tools); cut == nil {
				calls, tools = r.tools, true
			}
		}
		if err := deliver(text, calls); err != nil {
			return err
		}
		return cut
	})
	release() // the slot is free once the backend is done, before the audit commit
	u, cut := p.s.outcome(p.adm, err, last.metrics, p.ans.pieces)
	if err != nil && !cut {
		return result{}, err
	}
	res := result{usage: u}
	if err == nil {
		res.tail = p.ans.end()
	}
	res.reason = p.ans.reason(finishReason(last.doneReason, tools))
	return res, nil
}

// whole answers with one JSON body: build makes it from the text and tool
// calls released and how the answer ended. The completion record is
// committed before the body is sent.
func (p *pipe) whole(run runFunc, build func(text string, calls []api.ToolCall, res result) any) error {
	var (
		text  strings.Builder
		calls []api.ToolCall
	)
	res, err := p.generate(run, func(t string, cs []api.ToolCall) error {
		text.WriteString(t)
		calls = append(calls, cs...)
		return nil
	})
	if err != nil {
		return err
	}
	text.WriteString(res.tail)
	return p.s.respond(p.c, build(text.String(), calls, res), outcome{usage: res.usage, finishReason: res.reason})
}

// streamShape is a route's chunk stream.
type streamShape interface {
	// delta sends released text and tool calls; it is called for every
	// backend response, also those that release nothing.
	delta(sse *sseWriter, text string, calls []api.ToolCall) error
	// final sends the filter's tail, the finish reason and the usage, in
	// the route's events; [DONE] follows.
	final(sse *sseWriter, tail string, res result) error
}

// stream answers with the route's chunk stream. Keep-alive comments go
// out while the request waits for a slot and its first token. An error
// is the answer's status while nothing was sent, an error event after.
// The completion record is committed before the last events.
func (p *pipe) stream(run runFunc, shape streamShape) error {
	sse := newSSE(p.c.Writer, p.s.cfg.KeepAliveInterval)
	defer sse.Stop()
	var delivered strings.Builder
	res, err := p.generate(run, func(text string, calls []api.ToolCall) error {
		delivered.WriteString(text)
		return shape.delta(sse, text, calls)
	})
	sse.Stop()
	if err != nil {
		return p.s.failStream(p.c, sse, err)
	}
	delivered.WriteString(res.tail)
	if err := p.s.complete(p.c, outcome{status: http.StatusOK, usage: res.usage, finishReason: res.reason, response: delivered.String()}); err != nil {
		return p.s.streamError(p.c, sse, err)
	}
	if shape.final(sse, res.tail, res) == nil { // else the client is gone
		_ = sse.Done()
	}
	return nil
}

// embed runs an embedding call on a slot and settles the reservation with
// the prompt tokens the backend counted.
func (p *pipe) embed(req *api.EmbedRequest) (*api.EmbedResponse, error) {
	release, err := p.s.slot(p.ctx, p.c, p.model.Name, p.adm)
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := p.s.backend.Embed(p.ctx, req)
	release()
	if err != nil {
		return nil, err
	}
	p.adm.settle(resp.PromptEvalCount, 0, true)
	return resp, nil
}
