package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"

	"github.com/warden-llm/warden/safety/filter"
)

// The request pipeline. Every route that reaches the model takes the same
// steps in the same order, and the order is what makes it correct:
//
//	decode → validate            (the route: its wire types)
//	identify                     (a delegate key's end user: 400 invalid or missing when required, 403 blocked, 429 over its requests per minute)
//	begin: deadline → model      (404 for a missing or forbidden model, before anything is scanned or charged)
//	filter the prompt            (redact in place; a block is 400, nothing admitted)
//	admit: caps and quotas       (rate headers go out before a stream starts),
//	       the guard model judges the prompt (optional: guard_model.go),
//	       then the request record's commit starts (fail closed: 503 and a refund)
//	build the backend request    (the route: with the admitted output cap)
//	slot → backend               (while the request record commits: nothing of
//	                             the answer, not a keep-alive, leaves before
//	                             it is durable, and its failure cancels the
//	                             call; each piece through the filter and caps; a
//	                             stream's events go through a bounded buffer
//	                             with a write deadline, so no reader holds a slot)
//	release the slot             (before the audit commit: it needs no slot)
//	guard the answer             (optional: the guard model judges it whole;
//	                             a stream is held back until it has)
//	settle once → record → respond (the record hashes what was delivered)
//
// A 4xx answered before the request record (invalid, refused, blocked
// before admission) is counted in the key's per-minute refused record
// instead of two records of its own.
//
// A route writes only decode, validate, its backend request and the shape
// of its answer (a whole JSON body, or its chunk stream); begin, filter,
// admit and the finishers (whole, stream, embed) hold the rest.

// modelRequest is a route's request body: decoded, it checks itself
// (naming the first bad field), names the model it asks for, and the end
// user its body names (OpenAI's user, Anthropic's metadata.user_id; "" for
// none), which only a delegate key's request uses (identify).
type modelRequest interface {
	check() error
	modelName() string
	bodyUser() string
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
	if err := s.identify(c, req.bodyUser()); err != nil {
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
	s        *Server
	c        *gin.Context
	ctx      context.Context         // the request's, bounded by the request timeout
	end      context.CancelCauseFunc // ends ctx with a cause: errNotReading, errDrained, the deadline
	deadline *time.Timer             // ends ctx with context.DeadlineExceeded
	unhook   func() bool             // stops watching the server's cut
	model    modelInfo
	filter   *filter.Request // nil: no safety filter
	adm      *admission      // nil until admitted
	ans      *answer
	sse      *sseWriter // set while the request streams
	own      struct {   // homes of what a request needs once, allocated with the pipe
		adm admission
		ans answer
		gen struct { // generate's
			last    piece
			tools   bool // tool calls were delivered
			started bool // the first piece came
		}
		whole struct { // what whole collects
			text  strings.Builder
			calls []api.ToolCall
		}
	}

	// recorded is closed once the request record is durable (see
	// Server.startRequest); nil before admission. durableOK: durable
	// has seen it so.
	recorded  <-chan struct{}
	durableOK bool

	// guardIn is the prompt as the guard model reads it (nil: no guard
	// model), and guardParam names it in a refusal; see guard_model.go.
	guardIn    []api.Message
	guardParam string
}

// begin starts the pipeline for a request naming model: it bounds the
// request by its deadline and resolves the model the key must be allowed
// to use. The caller defers close.
//
// The deadline ends the same context as the causes do (one context, not
// one per bound): its cause is context.DeadlineExceeded, which is what
// cause returns and toAPIError maps to 504.
func (s *Server) begin(c *gin.Context, model string) (*pipe, error) {
	ctx, end := context.WithCancelCause(c.Request.Context())
	p := &pipe{s: s, c: c, ctx: ctx, end: end}
	p.deadline = time.AfterFunc(s.cfg.RequestTimeout, func() { end(context.DeadlineExceeded) })
	p.unhook = context.AfterFunc(s.cut, func() { end(errDrained) })
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
	if p.recorded != nil {
		_ = p.durable() // a request record that failed: nothing charged
	}
	p.adm.settle(0, 0, false)
	p.unhook()
	p.deadline.Stop()
	p.end(nil)
}

// cause names why the request's context ended, when it did and err is
// that ending: the client left (context.Canceled), stopped reading
// (errNotReading), the deadline passed, or the server cut it
// (errDrained). toAPIError maps each to its status.
func (p *pipe) cause(err error) error {
	if err == nil || p.ctx.Err() == nil {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return context.Cause(p.ctx)
	}
	return err
}

// header sets a response header while headers can still be sent.
func (p *pipe) header(key, value string) {
	if p.sse != nil {
		p.sse.Header(key, value)
		return
	}
	if !p.c.Writer.Written() {
		p.c.Header(key, value)
	}
}

// CutRequests ends every request in flight: each ends as a 503
// server_shutting_down answer, or with that error event when its stream
// has started, and is recorded with that status. The server's owner calls
// it when its drain timeout has passed, then gives the handlers a moment
// to finish before closing connections.
func (s *Server) CutRequests() { s.cutAll() }

// filterChat scans the chat request's texts on the way in (see
// Server.filterChat); a blocked prompt is refused here.
func (p *pipe) filterChat(req *chatRequest) error {
	fr, err := p.s.filterChat(p.c, req)
	p.filter = fr
	if err == nil && p.s.guard != nil {
		p.guardIn, p.guardParam = guardChat(req.Messages), "messages"
	}
	return err
}

// filterTexts scans prompt texts in place; param names them in a refusal.
func (p *pipe) filterTexts(param string, texts []string) error {
	fr, err := p.s.filterTexts(p.c, param, texts)
	p.filter = fr
	if err == nil && p.s.guard != nil {
		p.guardIn, p.guardParam = guardTexts(texts), param
	}
	return err
}

// admitChat admits a chat request (the chat route's, or the one a
// Messages or Responses request bridges to): its prompt estimate with the
// model's template overhead, and the output limit it states.
func (p *pipe) admitChat(req *chatRequest) error {
	return p.admit(estimateChat(req)+p.s.models.promptOverhead(p.ctx, p.model), req.maxTokens(), false)
}

// admit holds the request to its key's caps and quotas: promptTokens is
// its estimated prompt, maxTokens the output it asked for (nil: not
// stated). The guard model judges the prompt once it is admitted (a
// refusal charges the request, no tokens). The answer's filter and
// character cap are set up here, and the request record's commit starts:
// the backend call runs while it is written, and durable waits for it
// before anything of the answer leaves.
func (p *pipe) admit(promptTokens int64, maxTokens *int, embedding bool) error {
	adm, err := p.s.admit(p.c, &p.own.adm, promptTokens, maxTokens, embedding)
	if err != nil {
		return err
	}
	if err := p.guardPrompt(); err != nil {
		adm.settle(0, 0, true)
		return err
	}
	adm.capChars(p.filter)
	p.adm = adm
	p.ans = p.own.ans.init(p.filter, adm)
	// A request record that cannot be written cancels the backend call.
	p.recorded = p.s.startRequest(p.c, func() { p.end(errAuditUnavailable) })
	return nil
}

// durable waits until the request record is durable, before anything of
// the answer leaves and before the reservation is settled. When it could
// not be written it returns errAuditUnavailable (503) and nothing is
// charged.
func (p *pipe) durable() error {
	if p.durableOK {
		return nil
	}
	if err := p.s.awaitRequest(p.c); err != nil {
		p.adm.settle(0, 0, true) // nothing served: nothing charged
		return err
	}
	p.durableOK = true
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
	release, err := p.s.slot(p.ctx, p.c, p.model.Name, p.adm, p.header)
	if err != nil {
		if rerr := p.durable(); rerr != nil {
			return result{}, rerr
		}
		return result{}, p.cause(err)
	}
	defer release()
	p.s.hastenRequest(p.c) // the answer follows: its request record commits soon
	g := &p.own.gen        // the callback's state: no allocation of its own
	err = run(p.ctx, func(r piece) error {
		if err := p.ctx.Err(); err != nil {
			return err // the client left while output was held back, or the server cut it
		}
		if err := p.durable(); err != nil {
			return err // nothing of the answer before the request record
		}
		if !g.started {
			g.started = true
			noteFirst(p.c)
		}
		g.last = r
		text, cut := p.ans.add(r.text)
		var calls []api.ToolCall
		if cut == nil && len(r.tools) > 0 {
			if cut = p.ans.tools(r.tools); cut == nil {
				calls, g.tools = r.tools, true
			}
		}
		if err := deliver(text, calls); err != nil {
			return err
		}
		return cut
	})
	release() // the slot is free once the backend is done, before the audit commit
	if rerr := p.durable(); rerr != nil {
		return result{}, rerr
	}
	err = p.cause(err)
	u, cut := p.s.outcome(p.adm, err, g.last.metrics, p.ans.pieces)
	if err != nil && !cut {
		return result{}, err
	}
	res := result{usage: u}
	if err == nil {
		res.tail = p.ans.end()
	}
	res.reason = p.ans.reason(finishReason(g.last.doneReason, g.tools))
	return res, nil
}

// whole answers with one JSON body: build makes it from the text and tool
// calls released and how the answer ended. The completion record is
// committed before the body is sent.
func (p *pipe) whole(run runFunc, build func(text string, calls []api.ToolCall, res result) any) error {
	w := &p.own.whole
	res, err := p.generate(run, func(t string, cs []api.ToolCall) error {
		w.text.WriteString(t)
		w.calls = append(w.calls, cs...)
		return nil
	})
	if err != nil {
		return err
	}
	text, calls := &w.text, w.calls
	text.WriteString(res.tail)
	if withhold, err := p.guardAnswer(text.String(), calls, &res); err != nil {
		return err
	} else if withhold {
		text.Reset()
		calls = nil
	}
	// The body is written within the write timeout: a client that does
	// not read it holds no slot (it was released), and not the handler
	// for longer than that.
	rc := http.NewResponseController(p.c.Writer)
	_ = rc.SetWriteDeadline(time.Now().Add(p.s.cfg.WriteTimeout))
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	if err := p.s.respond(p.c, build(text.String(), calls, res), outcome{usage: res.usage, finishReason: res.reason}); err != nil {
		return err
	}
	_ = rc.Flush()
	return nil
}

// streamShape is a route's chunk stream.
type streamShape interface {
	// delta frames released text and tool calls; it is called for every
	// backend response, also those that release nothing.
	delta(sse *sseWriter, text string, calls []api.ToolCall) error
	// final frames the filter's tail, the finish reason and the usage, in
	// the route's events; [DONE] follows, unless the shape is a
	// namedStream.
	final(sse *sseWriter, tail string, res result) error
}

// namedStream is a stream shape of named events (Anthropic's Messages,
// OpenAI's Responses): its final events end the stream (no [DONE]), and
// it chooses its keep-alive and the frame of its error events.
type namedStream interface {
	streamShape
	ping() []byte
	errorEvent(sse *sseWriter, ae *apiError)
}

// stream answers with the route's chunk stream. Keep-alive comments go
// out while the request waits for a slot and its first token. The events
// go to the client through the SSE writer's bounded buffer, so the
// backend call (and its slot) never waits on a slow reader for longer
// than the write timeout; a client that stops reading or leaves ends the
// backend call.
//
// The completion record is committed once what the backend released has
// been written, before the last events; it holds the status the stream
// really ended with (200, 499 for a client gone, the error's status) and
// the hash of the content delivered: the text and each tool-call delta's
// JSON, in the order written. An error is the answer's status while
// nothing was sent, an error event after.
func (p *pipe) stream(run runFunc, shape streamShape) error {
	sse := newSSE(p.c.Writer, p.s.cfg.KeepAliveInterval, p.s.cfg.WriteTimeout, func() { p.end(errNotReading) })
	named, isNamed := shape.(namedStream)
	if isNamed {
		sse.named(named.ping(), named.errorEvent)
	}
	sse.after(p.recorded) // not even a keep-alive before the request record is durable
	p.sse = sse
	defer func() {
		sse.Close()
		p.sse = nil
	}()
	var held *heldAnswer // the answer held back for the guard model
	if p.guardsAnswer() {
		held = new(heldAnswer)
	}
	res, err := p.generate(run, func(text string, calls []api.ToolCall) error {
		if held != nil {
			held.add(text, calls)
			return nil
		}
		if err := shape.delta(sse, text, calls); err != nil {
			return err
		}
		return sse.commit(p.ctx, deliveredContent(text, calls), 1)
	})
	if err == nil && held != nil {
		err = p.releaseHeld(held, shape, &res)
	}
	sse.wait()
	if err == nil && sse.failed() {
		err = errNotReading // the backend finished, but the client did not read it all
	}
	if err != nil {
		return p.failStream(err)
	}
	o := outcome{status: http.StatusOK, usage: res.usage, finishReason: res.reason, response: sse.delivered.String() + res.tail}
	if err := p.s.complete(p.c, o); err != nil {
		p.streamError(err)
		return nil
	}
	if shape.final(sse, res.tail, res) == nil && !isNamed {
		sse.Done()
	}
	_ = sse.commit(context.WithoutCancel(p.ctx), res.tail, 0)
	return nil
}

// failStream ends a stream with err and records how it ended. A client
// that left or stopped reading gets nothing more (499). Otherwise err is
// the answer's status while nothing was sent, else an error event.
func (p *pipe) failStream(err error) error {
	if p.c.Request.Context().Err() != nil {
		err = errClientGone
	}
	ae := toAPIError(err)
	if ae != errClientGone && !p.sse.Started() {
		p.sse.Close()
		p.sse.copyHeaders()
		return err // writeError answers and records it
	}
	p.s.logError(p.c, err, ae)
	o := outcome{status: ae.Status, response: p.sse.delivered.String(),
		usage: usage{PromptTokens: int(p.adm.prompt), CompletionTokens: p.sse.pieces}}
	o.usage.TotalTokens = o.usage.PromptTokens + o.usage.CompletionTokens
	if p.s.complete(p.c, o) != nil {
		ae = errAuditUnavailable
	}
	if ae != errClientGone {
		p.sse.ErrorEvent(ae)
		_ = p.sse.commit(context.WithoutCancel(p.ctx), "", 0)
	}
	return nil
}

// streamError ends a stream whose completion record failed: the error
// event goes out where headers have, else the error answer.
func (p *pipe) streamError(err error) {
	ae := toAPIError(err)
	p.s.logError(p.c, err, ae)
	if !p.sse.Started() {
		p.sse.Close() // the writer is done with the connection
		p.sse.copyHeaders()
		if ae.RetryAfter > 0 {
			p.c.Header("Retry-After", strconv.Itoa(ae.RetryAfter))
		}
		p.c.AbortWithStatusJSON(ae.Status, errorPayload(p.c, ae))
		return
	}
	p.sse.ErrorEvent(ae)
	_ = p.sse.commit(context.WithoutCancel(p.ctx), "", 0)
}

// deliveredContent is what a delta delivers, for the completion record:
// its text, then its tool calls as the JSON the client gets.
func deliveredContent(text string, calls []api.ToolCall) string {
	if len(calls) == 0 {
		return text
	}
	b, err := json.Marshal(openai.ToToolCalls(calls))
	if err != nil {
		return text
	}
	return text + string(b)
}

// embed runs an embedding call on a slot and settles the reservation with
// the prompt tokens the backend counted.
func (p *pipe) embed(req *api.EmbedRequest) (*api.EmbedResponse, error) {
	release, err := p.s.slot(p.ctx, p.c, p.model.Name, p.adm, p.header)
	if err != nil {
		if rerr := p.durable(); rerr != nil {
			return nil, rerr
		}
		return nil, p.cause(err)
	}
	defer release()
	p.s.hastenRequest(p.c)
	resp, err := p.s.backend.Embed(p.ctx, req)
	release()
	if rerr := p.durable(); rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, p.cause(err)
	}
	p.adm.settle(resp.PromptEvalCount, 0, true)
	return resp, nil
}
