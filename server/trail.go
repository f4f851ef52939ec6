package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
)

// Auditor commits audit records; Append returns once the record is durable.
type Auditor interface {
	Append(ctx context.Context, rec audit.Record) (int64, error)
}

var _ Auditor = (*audit.Writer)(nil)

const trailKey = "warden.trail"

var errAuditUnavailable = &apiError{
	Status:     http.StatusServiceUnavailable,
	Type:       typeServer,
	Code:       "audit_unavailable",
	Message:    "The audit trail cannot be written, so the request was not served; retry shortly.",
	RetryAfter: 5,
}

// trail is one request's audit state: its request record is committed
// before anything reaches the model, its completion record before the
// answer is released.
type trail struct {
	start time.Time
	base  audit.Record // the fields both records share
	model modelInfo
	first time.Time // first token or piece from the backend
	done  bool

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

// auditRequest commits the request record of every authenticated request
// before its handler runs, and fails closed: when the record cannot be
// written the client gets 503 and nothing reaches the model (unless the
// operator chose audit.fail_open). After the handler, a request whose
// handler wrote no completion record (an error answer) gets one.
func (s *Server) auditRequest(c *gin.Context) {
	tr := &trail{
		start: time.Now(),
		base: audit.Record{
			RequestID: requestID(c),
			KeyID:     principal(c).KeyID,
			ClientIP:  c.ClientIP(),
			Endpoint:  c.Request.Method + " " + c.FullPath(),
		},
	}
	if s.cfg.Audit == nil {
		c.Set(trailKey, tr)
		c.Next()
		if !tr.done {
			_ = s.complete(c, outcome{status: c.Writer.Status()})
		}
		return
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = errTooLarge(mbe.Limit)
		}
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	tr.base.PromptSHA256 = hex.EncodeToString(sum[:])
	rec := tr.base
	rec.Kind = audit.KindRequest
	rec.Time = tr.start
	if s.cfg.AuditText != audit.StoreTextRedacted {
		rec.Prompt = string(body) // stored only when the writer keeps text
	}
	if _, aerr := s.cfg.Audit.Append(c.Request.Context(), rec); aerr != nil {
		s.log.Error("audit: request record not written", "request_id", requestID(c), "err", aerr)
		if !s.cfg.AuditFailOpen {
			s.writeError(c, errAuditUnavailable)
			return
		}
	}
	c.Set(trailKey, tr)
	if err != nil {
		s.writeError(c, err)
		return
	}
	c.Next()
	if !tr.done {
		// An answer written without a completion record (none of the
		// handlers does so for a success): record it late rather than not.
		_ = s.complete(c, outcome{status: c.Writer.Status()})
	}
}

func trailOf(c *gin.Context) *trail {
	v, _ := c.Get(trailKey)
	tr, _ := v.(*trail)
	return tr
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
	if tr == nil || tr.done {
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
	if _, err := s.cfg.Audit.Append(context.WithoutCancel(c.Request.Context()), rec); err != nil {
		s.log.Error("audit: completion record not written", "request_id", requestID(c), "err", err)
		if !s.cfg.AuditFailOpen {
			return errAuditUnavailable
		}
	}
	return nil
}

// respond writes a JSON answer after its completion record is committed;
// the record's response hash is that of the exact body sent.
func (s *Server) respond(c *gin.Context, v any, o outcome) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	o.status = http.StatusOK
	o.response = string(body)
	if err := s.complete(c, o); err != nil {
		return err
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
	return nil
}
