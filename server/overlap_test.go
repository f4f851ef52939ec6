package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/audit/audittest"
)

// heldAuditor holds each request record until the backend call has
// started, then appends it through the real writer: the request record
// commits while the model works (issue 17, lever 1).
type heldAuditor struct {
	w       *audit.Writer
	started chan struct{}
}

func (h *heldAuditor) Append(ctx context.Context, rec audit.Record) (int64, error) {
	if rec.Kind == audit.KindRequest && rec.Endpoint == "POST /v1/chat/completions" {
		<-h.started
	}
	return h.w.Append(ctx, rec)
}

// Begin appends the record from a goroutine of its own, held as Append
// holds it; it gives no Ticket.
func (h *heldAuditor) Begin(ctx context.Context, rec audit.Record, done func(int64, error)) (*audit.Ticket, error) {
	go func() { done(h.Append(ctx, rec)) }()
	return nil, nil
}

// TestRequestRecordFailsAfterBackendStarted: the request record's commit
// fails on a real full disk after the backend call has started. The
// backend call is cancelled, the client gets 503 audit_unavailable and
// not one byte of the answer (no SSE event, no keep-alive); nothing is
// recorded for it and nothing charged to its key.
func TestRequestRecordFailsAfterBackendStarted(t *testing.T) {
	for _, stream := range []string{"false", "true"} {
		t.Run("stream="+stream, func(t *testing.T) {
			w, db, _ := realAudit(t)
			aud := &heldAuditor{w: w, started: make(chan struct{})}
			cancelled := make(chan error, 1)
			b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
				close(aud.started)
				<-ctx.Done() // a model still working: only the failed record ends it
				cancelled <- context.Cause(ctx)
				return ctx.Err()
			}}
			k := newKeyed(t, b, Config{Audit: aud, KeepAliveInterval: time.Millisecond})
			id, token := k.key(t, `{"name":"payer","limits":{"tokens_per_day":1000000}}`)
			audittest.FillUntilFull(t, db, w)
			before := w.Stats().Records
			resp, out := k.do(t, http.MethodPost, "/v1/chat/completions", token, `{"model":"demo","stream":`+stream+`,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != 503 || !strings.Contains(out, "audit_unavailable") {
				t.Fatalf("status %d %q, want 503 audit_unavailable", resp.StatusCode, out)
			}
			if strings.Contains(out, "data:") || strings.Contains(out, "keep-alive") || strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
				t.Errorf("part of the answer left before the request record: %q %v", out, resp.Header)
			}
			select {
			case cause := <-cancelled:
				if !errors.Is(cause, errAuditUnavailable) {
					t.Errorf("backend context ended by %v, want the failed request record", cause)
				}
			default:
				t.Error("the backend call was not cancelled")
			}
			if got := w.Stats().Records; got != before {
				t.Errorf("%d records committed for a request that failed closed", got-before)
			}
			resp, out = k.do(t, http.MethodGet, "/admin/keys/"+id+"/usage", k.admin, "")
			var u struct {
				Usage struct {
					TokensToday int64 `json:"tokens_today"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(out), &u); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("usage: %d %s", resp.StatusCode, out)
			}
			if u.Usage.TokensToday != 0 {
				t.Errorf("charged %d tokens for a request that failed closed, want 0", u.Usage.TokensToday)
			}
		})
	}
}

// TestKeepAliveWaitsForRequestRecord: a stream's keep-alives are held
// back until the request record is durable, then go out.
func TestKeepAliveWaitsForRequestRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(rec)
		ready := make(chan struct{})
		sse := newSSE(c.Writer, time.Second, time.Minute, nil)
		sse.after(ready)
		time.Sleep(10 * time.Second) // the bubble's clock: ten intervals pass
		synctest.Wait()
		if rec.Body.Len() != 0 || sse.Started() {
			t.Fatalf("wrote %q before the request record was durable", rec.Body.String())
		}
		close(ready)
		synctest.Wait()
		sse.Close()
		if !strings.Contains(rec.Body.String(), ": keep-alive") || !sse.Started() {
			t.Errorf("after the record: %q, want a keep-alive", rec.Body.String())
		}
	})
}
