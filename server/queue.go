package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-llm/warden/runtime/sched"
)

// Queue shares the backend's batch slots fairly across keys, and a
// delegate key's slots among its end users (user "" for none): a request
// waits for a slot of its model before its backend call.
type Queue interface {
	AcquireUser(ctx context.Context, model, keyID, user string, cost int64) (release func(), waited time.Duration, err error)
}

var _ Queue = (*sched.Scheduler)(nil)

// slot waits for a backend slot for the request's model. Its cost for the
// fair share is the tokens it reserved (prompt bound plus output cap). The
// wait goes into the x-warden-queue-ms header through header (which sets
// it while headers can still be sent); a stream that is waiting gets keep-alive comments from its SSE
// writer meanwhile. Callers release the slot as soon as the backend call
// returns (the audit commit and the answer's write need no slot) and defer
// it too; a second release does nothing. With no Queue configured it
// returns at once.
func (s *Server) slot(ctx context.Context, c *gin.Context, model string, adm *admission, header func(key, value string)) (func(), error) {
	if s.cfg.Queue == nil {
		return func() {}, nil
	}
	release, waited, err := s.cfg.Queue.AcquireUser(ctx, model, principal(c).KeyID, userOf(c), adm.prompt+int64(adm.outputCap))
	header("X-Warden-Queue-Ms", strconv.FormatInt(waited.Milliseconds(), 10))
	if s.cfg.Metrics != nil {
		m := s.cfg.Metrics
		cachedChild(&m.queueWaits, model, func() prometheus.Observer { return m.queueWait.WithLabelValues(model) }).Observe(waited.Seconds())
	}
	if err != nil {
		return nil, queueError(err)
	}
	return release, nil
}

// queueError maps the scheduler's refusals: a key over its own queue bound
// is 429 (it is the one sending too much), a full or slow queue is 503.
func queueError(err error) error {
	var qe *sched.QueueError
	if !errors.As(err, &qe) {
		return err
	}
	retry := max(int(math.Ceil(qe.RetryAfter.Seconds())), 1)
	if errors.Is(err, sched.ErrUserQueueFull) {
		return &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "queue_full_for_user",
			Message: "Too many of this end user's requests are waiting for the model; retry later.", RetryAfter: retry}
	}
	if errors.Is(err, sched.ErrKeyQueueFull) {
		return &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "queue_full_for_key",
			Message: "Too many of this key's requests are waiting for the model; retry later.", RetryAfter: retry}
	}
	if errors.Is(err, sched.ErrGateClosed) {
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: qe.Reason,
			Message: "The model cannot be scheduled now (the GPU is too hot, or short of memory to load it); retry later.", RetryAfter: retry}
	}
	return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: qe.Reason,
		Message: "The model is busy; retry later.", RetryAfter: retry}
}
