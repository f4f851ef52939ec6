package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
)

// Auditor commits audit records. Append returns once the record is
// durable. Begin queues a request record and reports its outcome to done
// later, without a goroutine waiting for it; the record may share another
// request's transaction until its Ticket is flushed (see
// audit.Writer.Begin). A nil Ticket means the record commits on its own.
type Auditor interface {
	Append(ctx context.Context, rec audit.Record) (int64, error)
	Begin(ctx context.Context, rec audit.Record, done func(seq int64, err error)) (*audit.Ticket, error)
}

var _ Auditor = (*audit.Writer)(nil)

var errAuditUnavailable = &apiError{
	Status:     http.StatusServiceUnavailable,
	Type:       typeServer,
	Code:       "audit_unavailable",
	Message:    "The audit trail cannot be written, so the request was not served; retry shortly.",
	RetryAfter: 5,
}

// trail is one request's audit state. A request that reaches the model
// has its request record committed while the backend call starts
// (startRequest, from the pipeline's admission), durable before any byte
// of the answer leaves (awaitRequest), and its completion record before
// the answer is released. A request answered with a 4xx before that
// (invalid, forbidden, over quota) writes neither: it is counted in its
// key's request_refused aggregate for the minute. A prompt the safety
// filter acted on keeps both records, for its decisions and alert.
type trail struct {
	start     time.Time
	base      audit.Record // the fields both records share
	model     modelInfo
	first     time.Time      // first token or piece from the backend
	committed bool           // the request record is written (or fail-open skipped it)
	failed    bool           // the request record could not be written
	pending   *pendingRecord // the request record being committed (startRequest)
	ticket    *audit.Ticket  // the request record's (nil: it commits on its own), ended with the request
	done      bool

	// The request body is hashed as the handler reads it; its text is kept
	// only when the writer stores text.
	hash hash.Hash
	text *bytes.Buffer

	filter         *filter.Request // nil: no safety filter
	redactedPrompt string          // the prompt texts after input filtering
}

// outcome is what a handler reports when its answer is ready.
type outcome struct {
	status       int
	usage        usage
	finishReason string
	response     string // the text delivered (or, for JSON answers, the body)
}

// auditRequest sets up the audit state of every authenticated request:
// the body is hashed as the handler reads it (no copy is kept unless the
// writer stores text). After the handler, a request whose handler wrote no
// completion record (an error answer) gets one, or is counted as refused.
func (s *Server) auditRequest(c *gin.Context) {
	st := stateOf(c)
	tr := &st.trailOwn // the request's state holds it: one allocation less
	*tr = trail{
		start: time.Now(),
		base: audit.Record{
			RequestID: st.id,
			KeyID:     st.principal.KeyID,
			ClientIP:  st.ip,
			Endpoint:  endpointName(c.Request.Method, c.FullPath()),
		},
	}
	if st.principal.Probe {
		tr.base.Detail = probeDetail // both records say the request is a probe
	}
	if s.cfg.Audit != nil && c.Request.Body != nil {
		tr.hash = sha256.New()
		var w io.Writer = tr.hash
		if s.cfg.AuditText == audit.StoreTextFull {
			tr.text = new(bytes.Buffer) // the writer keeps the body as sent
			w = io.MultiWriter(tr.hash, tr.text)
		}
		body := c.Request.Body
		c.Request.Body = readCloser{io.TeeReader(body, w), body}
	}
	st.trail = tr
	defer func() {
		if tr.ticket != nil {
			tr.ticket.End() // also when the handler panicked
		}
	}()
	c.Next()
	if !tr.done {
		// An answer written without a completion record (none of the
		// handlers does so for a success): record it late rather than not.
		_ = s.complete(c, outcome{status: c.Writer.Status()})
	}
}

// endpoints holds the audit records' endpoint names, "METHOD /path", made
// once per route: auditRequest runs on matched routes only, so the
// methods and paths are the registered ones.
var endpoints sync.Map // endpointKey → string

type endpointKey struct{ method, path string }

func endpointName(method, path string) string {
	k := endpointKey{method, path}
	if v, ok := endpoints.Load(k); ok {
		return v.(string)
	}
	name := method + " " + path
	endpoints.Store(k, name)
	return name
}

// probeDetail is the detail of a probe key's request and completion
// records (`warden probe`).
var probeDetail = json.RawMessage(`{"probe":true}`)

type readCloser struct {
	io.Reader
	io.Closer
}

// commitRequest commits the request record and waits for it: an answer
// that needed no model, or a server error before it, records both records
// this way (see complete). It fails closed like awaitRequest.
func (s *Server) commitRequest(c *gin.Context) error {
	s.startRequest(c, nil)
	return s.awaitRequest(c)
}

// pendingRecord is a request record being committed while the backend
// call runs. The committing goroutine sets err before it closes done;
// durable is closed first when the record is committed (or fail-open
// skipped it), never when it failed.
type pendingRecord struct {
	done    chan struct{}
	durable chan struct{}
	err     error
}

// closedChan is a channel that is always ready.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// startRequest starts committing the request record; the pipeline calls
// it once the request is admitted, and the backend call starts while the
// record is being written (lever 1 of issue 17: one fsync on the critical
// path, not two). Nothing of the answer may leave before awaitRequest has
// returned nil, and the completion record is appended only after it, so
// the chain keeps the request record first. The returned channel is
// closed once the record is durable (never when it failed): a stream's
// keep-alives wait for it. onFail, if set, runs when the record could
// not be written and the request fails closed: it cancels the backend
// call.
func (s *Server) startRequest(c *gin.Context, onFail func()) <-chan struct{} {
	tr := trailOf(c)
	if tr == nil || s.cfg.Audit == nil {
		return closedChan
	}
	if tr.pending != nil {
		return tr.pending.durable
	}
	if tr.committed || tr.failed {
		return closedChan // failed: nothing is written anyway
	}
	if tr.hash != nil {
		// The hash covers the whole body: read what the decoder left.
		_, _ = io.Copy(io.Discard, c.Request.Body)
		tr.base.PromptSHA256 = hex.EncodeToString(tr.hash.Sum(nil))
	}
	rec := tr.base
	rec.Kind = audit.KindRequest
	rec.Time = tr.start
	if tr.text != nil {
		rec.Prompt = tr.text.String()
	}
	pr := &pendingRecord{done: make(chan struct{}), durable: make(chan struct{})}
	tr.pending = pr
	// finish does not touch c: the handler waits for the record
	// (awaitRequest) before it returns, on every path, but gin reuses c.
	ctx := context.WithoutCancel(c.Request.Context())
	id := requestID(c)
	finish := func(err error) {
		defer close(pr.done)
		s.auditState.note(err, s.now())
		if err != nil {
			s.repeated.Log(ctx, s.log, slog.LevelError, "audit: request record not written", "request_id", id, "err", err)
			if !s.cfg.AuditFailOpen {
				pr.err = err
				if onFail != nil {
					onFail()
				}
				return
			}
		}
		close(pr.durable)
	}
	t, err := s.cfg.Audit.Begin(ctx, rec, func(_ int64, err error) { finish(err) })
	if err != nil {
		finish(err)
	}
	tr.ticket = t
	return pr.durable
}

// hastenRequest asks for the request record to be committed soon: the
// request has its slot, and the answer will follow. Until then the record
// may wait to share another request's transaction (audit.Writer.Begin);
// now it waits at most audit.commit_delay (audit.Ticket.Soon), which the
// backend's first token takes longer than, and awaitRequest commits it
// at once if the answer is there first.
func (s *Server) hastenRequest(c *gin.Context) {
	if tr := trailOf(c); tr != nil && tr.pending != nil && tr.ticket != nil {
		tr.ticket.Soon()
	}
}

// awaitRequest waits for the request record startRequest began. It fails
// closed: when the record could not be written it returns
// errAuditUnavailable, the caller answers 503 and nothing of the answer
// leaves (unless the operator chose audit.fail_open). With no record
// pending it returns at once.
func (s *Server) awaitRequest(c *gin.Context) error {
	tr := trailOf(c)
	if tr == nil {
		return nil
	}
	if pr := tr.pending; pr != nil {
		if tr.ticket != nil {
			select {
			case <-pr.done:
			default:
				tr.ticket.Flush()
			}
		}
		<-pr.done
		tr.pending = nil
		if pr.err != nil {
			tr.failed, tr.done = true, true // no completion record for a request never served
		} else {
			tr.committed = true
		}
	}
	if tr.failed {
		return errAuditUnavailable
	}
	return nil
}

// appendRecord appends rec and tracks whether the trail can be written,
// for /readyz.
func (s *Server) appendRecord(c *gin.Context, rec audit.Record) error {
	return s.appendRecordCtx(context.WithoutCancel(c.Request.Context()), rec)
}

func (s *Server) appendRecordCtx(ctx context.Context, rec audit.Record) error {
	_, err := s.cfg.Audit.Append(ctx, rec)
	s.auditState.note(err, s.now())
	return err
}

func trailOf(c *gin.Context) *trail {
	if st := stateOf(c); st != nil {
		return st.trail
	}
	return nil
}

// noteModel records which model a request resolved to.
func noteModel(c *gin.Context, m modelInfo) {
	if tr := trailOf(c); tr != nil {
		tr.model = m
	}
}

// noteRedactedPrompt records the prompt texts as the model gets them, for
// audit.store_text = "redacted".
func noteRedactedPrompt(c *gin.Context, text string) {
	if tr := trailOf(c); tr != nil {
		tr.redactedPrompt = text
	}
}

// noteFirst records the time of the backend's first piece.
func noteFirst(c *gin.Context) {
	if tr := trailOf(c); tr != nil && tr.first.IsZero() {
		tr.first = time.Now()
	}
}

// complete commits the completion record. It must succeed before the
// answer is released; on failure (with fail_open off) the caller answers
// with errAuditUnavailable instead.
func (s *Server) complete(c *gin.Context, o outcome) error {
	tr := trailOf(c)
	if tr == nil {
		return nil
	}
	if tr.pending != nil {
		// The request record first: the chain keeps it before its
		// completion, and a failed one fails the answer closed.
		if err := s.awaitRequest(c); err != nil {
			return err
		}
	}
	if tr.done {
		return nil
	}
	tr.done = true
	now := time.Now()
	var ttft time.Duration
	if !tr.first.IsZero() {
		ttft = tr.first.Sub(tr.start)
	}
	s.cfg.Metrics.observe(c.FullPath(), tr.model.Name, tr.base.KeyID, o, now.Sub(tr.start), ttft)
	if s.cfg.Audit == nil {
		return nil
	}
	if !tr.committed {
		if o.status >= 400 && o.status < 500 && safetyRecord(tr.filter) == nil {
			// Refused before the model: counted, not recorded one by one.
			// A refusal the safety filter decided keeps its records: its
			// completion record carries the decision and raises the alert.
			if s.cfg.OnRequestRefused != nil {
				s.cfg.OnRequestRefused(tr.base.KeyID, tr.base.ClientIP, o.status)
			}
			return nil
		}
		// An answer that needed no model (the model list) or a server
		// error before it: both records, the request's first.
		if err := s.commitRequest(c); err != nil {
			return err
		}
	}
	rec := tr.base
	rec.Kind = audit.KindCompletion
	rec.Time = now
	rec.Model = tr.model.Name
	rec.ModelDigest = tr.model.Digest
	rec.TokensIn = int64(o.usage.PromptTokens)
	rec.TokensOut = int64(o.usage.CompletionTokens)
	rec.LatencyMS = now.Sub(tr.start).Milliseconds()
	rec.TTFTMS = ttft.Milliseconds()
	rec.Status = int64(o.status)
	rec.FinishReason = o.finishReason
	rec.Response = o.response
	rec.Safety = safetyRecord(tr.filter)
	if s.cfg.AuditText == audit.StoreTextRedacted {
		rec.Prompt = tr.redactedPrompt
	}
	s.cfg.Metrics.safety(tr.filter)
	if o.response != "" {
		sum := sha256.Sum256([]byte(o.response))
		rec.ResponseSHA256 = hex.EncodeToString(sum[:])
	}
	// The answer is ready: a client that leaves now does not stop its record.
	if err := s.appendRecord(c, rec); err != nil {
		s.repeated.Log(c.Request.Context(), s.log, slog.LevelError, "audit: completion record not written", "request_id", requestID(c), "err", err)
		if !s.cfg.AuditFailOpen {
			return errAuditUnavailable
		}
	}
	return nil
}

// respond writes a JSON answer after its completion record is committed;
// the record's response hash is that of the exact body sent.
func (s *Server) respond(c *gin.Context, v any, o outcome) error {
	body, ok := appendAnswer(nil, v)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return err
		}
	}
	o.status = http.StatusOK
	if s.cfg.Audit != nil {
		o.response = string(body) // for the completion record's hash
	}
	if err := s.complete(c, o); err != nil {
		return err
	}
	s.lateRateHeaders(c)
	// With its length known, the answer leaves in one write when the
	// pipeline flushes it, not as chunks and a terminating chunk after.
	c.Header("Content-Length", strconv.Itoa(len(body)))
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
	return nil
}

// auditRecheck is how long a failed append keeps /readyz at "not ready"
// when nothing is appended since: then requests are let through again, and
// the next append decides.
const auditRecheck = 30 * time.Second

// auditHealth is the outcome of the last audit append.
type auditHealth struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (h *auditHealth) note(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.at = err, now
}

// healthy reports the audit trail as unwritable while the last append
// failed, for auditRecheck after it.
func (h *auditHealth) healthy(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil && now.Sub(h.at) < auditRecheck {
		return h.err
	}
	return nil
}

// healthChecker is an Auditor that can tell whether it can write.
type healthChecker interface {
	Healthy() error
}

// auditHealthy reports whether the audit trail can be written: the
// Auditor's own check if it has one, else the last append's outcome.
func (s *Server) auditHealthy() error {
	if hc, ok := s.cfg.Audit.(healthChecker); ok {
		if err := hc.Healthy(); err != nil {
			return err
		}
	}
	return s.auditState.healthy(s.now())
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}
