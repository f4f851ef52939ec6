package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// Authenticator turns a presented API key into the principal it names, or
// keys.ErrInvalidKey whatever the reason.
type Authenticator interface {
	Authenticate(token string) (*keys.Principal, error)
}

// Limiter holds keys to their quotas: a reservation at admission, settled
// with real counts after the answer.
type Limiter interface {
	Count(keyID string, lim quota.Limits) error
	Admit(ctx context.Context, keyID string, lim quota.Limits, promptTokens, maxTokens int64, maxTokensStated bool) (*quota.Reservation, error)
	Status(keyID string, lim quota.Limits) quota.Status
	// CountUser and AdmitUser hold a delegate key's end user to its
	// per-user limits beside the key's.
	CountUser(keyID, user string, userLim quota.Limits) error
	AdmitUser(ctx context.Context, keyID string, lim quota.Limits, user string, userLim quota.Limits, promptTokens, maxTokens int64, maxTokensStated bool) (*quota.Reservation, error)
}

var (
	_ Authenticator = (*keys.Cache)(nil)
	_ Limiter       = (*quota.Limiter)(nil)
)

var errInvalidKey = &apiError{
	Status:  http.StatusUnauthorized,
	Type:    typeInvalidRequest,
	Code:    "invalid_api_key",
	Message: "Incorrect API key provided. Keys look like wdn_<id>_<secret>; ask your Warden admin for one.",
}

var errKeyIPNotAllowed = &apiError{
	Status:  http.StatusForbidden,
	Type:    typeInvalidRequest,
	Code:    "ip_not_allowed",
	Message: "This API key may not be used from this address.",
}

// authenticate requires a valid key (Authorization: Bearer, or x-api-key)
// on every route of its group. Every failure gets the same 401, so ids
// cannot be probed. The request is then counted against the key's
// requests per minute, before its body is read: every request counts,
// whatever becomes of it (a bad body, a model the key may not use, a
// blocked prompt, GET /v1/models), and one over the limit is refused with
// 429 before it costs anything else. A key with client networks
// (allow_cidrs) is refused with 403 ip_not_allowed from any other address
// (the peer, or X-Forwarded-For from a trusted proxy).
func (s *Server) authenticate(c *gin.Context) {
	var banAddr netip.Addr
	banning := false
	if s.bans != nil {
		banAddr, banning = s.banAddr(c)
	}
	if banning {
		if err := s.bans.refused(banAddr, s.now()); err != nil {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.banned.Inc()
			}
			s.refusedBeforeAuth(c)
			s.writeError(c, err)
			return
		}
	}
	token := bearer(c.GetHeader("Authorization"))
	if token == "" {
		token = strings.TrimSpace(c.GetHeader("X-Api-Key"))
	}
	p, err := s.cfg.Keys.Authenticate(token)
	if err != nil || p == nil {
		if banning {
			s.bans.failed(banAddr, s.now())
		}
		if s.cfg.OnAuthRefused != nil {
			s.cfg.OnAuthRefused(clientIP(c))
		}
		s.writeError(c, errInvalidKey)
		return
	}
	st := stateOf(c)
	st.principal, st.limits = p, s.limitsFor(p)
	if !p.AllowsAddr(clientAddr(c)) {
		// Outside the key's client networks: refused before it counts
		// against the key's quota, and recorded in its aggregate record.
		s.writeError(c, errKeyIPNotAllowed)
		if s.cfg.OnRequestRefused != nil {
			s.cfg.OnRequestRefused(p.KeyID, clientIP(c), c.Writer.Status())
		}
		return
	}
	if err := s.countRequest(c, p); err != nil {
		s.writeError(c, err)
		if s.cfg.OnRequestRefused != nil { // counted in the key's aggregate record, like the refusals after it
			s.cfg.OnRequestRefused(p.KeyID, clientIP(c), c.Writer.Status())
		}
		return
	}
	c.Next()
}

// banAddr is the address the auth-failure ban judges, and whether it
// judges one: this machine's own clients are never banned. A loopback
// peer that sends X-Forwarded-For is a proxy on this machine that
// server.trusted_proxies does not name (a trusted one would have made the
// forwarded address the client's): its clients are judged by the address
// it appended last, so they are not all exempt as this machine's, nor all
// banned together as one address. Nothing else reads that header from an
// untrusted peer.
func (s *Server) banAddr(c *gin.Context) (netip.Addr, bool) {
	a := clientAddr(c)
	if !a.IsLoopback() {
		return a, true
	}
	xff := c.Request.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return a, false
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	f := parseAddr(strings.TrimSpace(last))
	if !f.IsValid() || f.IsLoopback() {
		return a, false
	}
	s.untrustedProxy.Do(func() {
		s.log.Warn("a proxy on this machine forwards requests (X-Forwarded-For) but server.trusted_proxies does not name it: "+
			"the auth-failure ban judges its clients by the forwarded address, while per-address limits, key client networks and the audit trail see the proxy's",
			"peer", a.String())
	})
	return f, true
}

// countRequest counts the request against its key's requests per minute
// and sets the request headers of x-ratelimit-*.
func (s *Server) countRequest(c *gin.Context, p *keys.Principal) error {
	if s.cfg.Quota == nil {
		return nil
	}
	ql := quotaLimits(s.limits(c))
	err := s.cfg.Quota.Count(p.KeyID, ql)
	if err == nil && admitting[c.FullPath()] {
		// Admission sets them with the reservation counted; an answer
		// given before it sets them then (lateRateHeaders).
		stateOf(c).rateDue = true
		return nil
	}
	s.rateHeaders(c, p.KeyID, ql)
	var le *quota.LimitError
	if errors.As(err, &le) {
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.rateLimited.WithLabelValues(le.Limit).Inc()
		}
		return rateLimited(le)
	}
	return err
}

func bearer(h string) string {
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

func principal(c *gin.Context) *keys.Principal {
	if st := stateOf(c); st != nil {
		return st.principal
	}
	return nil
}

// requireScope refuses keys without scope with 403.
func (s *Server) requireScope(scope keys.Scope) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !principal(c).Allows(scope) {
			s.writeError(c, &apiError{
				Status:  http.StatusForbidden,
				Type:    typeInvalidRequest,
				Code:    "permission_denied",
				Message: fmt.Sprintf("This API key does not have the '%s' scope.", scope),
			})
			return
		}
		c.Next()
	}
}

// useModel resolves the model a request names, refuses it when the key
// may not use it, and notes it for the audit trail.
func (s *Server) useModel(ctx context.Context, c *gin.Context, name string) (modelInfo, error) {
	m, err := s.models.resolve(ctx, name)
	if err != nil {
		return m, err
	}
	if err := allowModel(c, name, m); err != nil {
		return m, err
	}
	noteModel(c, m)
	return m, nil
}

// allowModel refuses a model the key may not use with the 404 of a
// model that does not exist (model_not_found, naming the model as the
// request spelled it), on every route: a key limited to some models must
// not learn whether others exist.
func allowModel(c *gin.Context, asked string, m modelInfo) error {
	if principal(c).AllowsModel(m.Name) {
		return nil
	}
	return modelNotFound(asked)
}

// limits is the request's key's limits merged over the configured
// defaults, merged once when the key is authenticated.
func (s *Server) limits(c *gin.Context) keys.Limits {
	if st := stateOf(c); st != nil && st.principal != nil {
		return st.limits
	}
	return s.limitsFor(principal(c))
}

// limitsFor merges a key's limits over the configured defaults.
func (s *Server) limitsFor(p *keys.Principal) keys.Limits {
	l, d := p.Limits, s.cfg.DefaultLimits
	pick := func(v, def int64) int64 {
		if v > 0 {
			return v
		}
		return def
	}
	return keys.Limits{
		RPM:             pick(l.RPM, d.RPM),
		TPM:             pick(l.TPM, d.TPM),
		TokensPerDay:    pick(l.TokensPerDay, d.TokensPerDay),
		TokensPerMonth:  pick(l.TokensPerMonth, d.TokensPerMonth),
		Concurrency:     pick(l.Concurrency, d.Concurrency),
		MaxOutputTokens: pick(l.MaxOutputTokens, d.MaxOutputTokens),
		MaxOutputChars:  pick(l.MaxOutputChars, d.MaxOutputChars),
		MaxInputTokens:  pick(l.MaxInputTokens, d.MaxInputTokens),

		UserRPM:            pick(l.UserRPM, d.UserRPM),
		UserTPM:            pick(l.UserTPM, d.UserTPM),
		UserTokensPerDay:   pick(l.UserTokensPerDay, d.UserTokensPerDay),
		UserTokensPerMonth: pick(l.UserTokensPerMonth, d.UserTokensPerMonth),
		UserConcurrency:    pick(l.UserConcurrency, d.UserConcurrency),
	}
}

func quotaLimits(l keys.Limits) quota.Limits {
	return quota.Limits{RPM: l.RPM, TPM: l.TPM, TokensPerDay: l.TokensPerDay, TokensPerMonth: l.TokensPerMonth, Concurrency: l.Concurrency}
}

// admission is a request let in: the output cap it runs with, its
// character cap, and the reservation to settle when it ends.
type admission struct {
	outputCap int   // tokens
	charCap   int64 // 0 = none
	prompt    int64 // the estimate reserved
	res       *quota.Reservation
	settled   bool
}

// admit applies the key's caps and quotas to a request whose prompt is at
// most promptTokens tokens and which asked for maxTokens (nil: not stated).
// It sets the rate-limit headers, which must go out before a stream starts.
// The admission is made in a, the caller's (the pipe holds it).
func (s *Server) admit(c *gin.Context, a *admission, promptTokens int64, maxTokens *int, embedding bool) (*admission, error) {
	p := principal(c)
	lim := s.limits(c)
	if lim.MaxInputTokens > 0 && promptTokens > lim.MaxInputTokens {
		return nil, &apiError{
			Status:  http.StatusBadRequest,
			Type:    typeInvalidRequest,
			Code:    codeContextExceeded,
			Message: fmt.Sprintf("The input may be up to %d tokens for this API key; this one is estimated at %d.", lim.MaxInputTokens, promptTokens),
		}
	}
	*a = admission{prompt: promptTokens, charCap: lim.MaxOutputChars}
	stated := maxTokens != nil
	want := int64(s.cfg.MaxOutputTokens)
	if stated {
		want = int64(*maxTokens)
	}
	clamped := false
	if lim.MaxOutputTokens > 0 && want > lim.MaxOutputTokens {
		want, clamped = lim.MaxOutputTokens, true
	}
	if embedding {
		want, stated = 0, true
	}
	ql := quotaLimits(lim)
	if s.cfg.Quota != nil {
		res, err := s.cfg.Quota.AdmitUser(c.Request.Context(), p.KeyID, ql, userOf(c), userLimits(lim), promptTokens, want, stated && !clamped)
		s.rateHeaders(c, p.KeyID, ql)
		if err != nil {
			var le *quota.LimitError
			if errors.As(err, &le) {
				if s.cfg.Metrics != nil {
					s.cfg.Metrics.rateLimited.WithLabelValues(limitLabel(le)).Inc()
				}
				return nil, rateLimited(le)
			}
			return nil, fmt.Errorf("admit: %w", err)
		}
		a.res = res
		if res.OutputCap() < want {
			want, clamped = res.OutputCap(), true
		}
	}
	a.outputCap = int(min(want, math.MaxInt32))
	if clamped && !embedding {
		c.Header("X-Warden-Max-Tokens", strconv.Itoa(a.outputCap))
	}
	return a, nil
}

// settle charges the real counts (or, when the answer ended without them,
// the whole reservation). It runs once.
func (a *admission) settle(prompt, output int, ok bool) {
	if a == nil || a.res == nil || a.settled {
		return
	}
	a.settled = true
	if ok {
		_ = a.res.Settle(settleCtx, int64(prompt), int64(output))
		return
	}
	_ = a.res.Fail(settleCtx)
}

// settleCtx is already done. Settle and Fail given it charge the budgets
// in memory at once and leave the durable write to the limiter's writer
// goroutine, whose Close waits for it: no client waits for a commit
// (0.5-0.7 ms with synchronous=FULL), and write errors are retried and
// reported by the limiter.
var settleCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// rateHeaders sets the x-ratelimit-* headers from the key's quota status.
// The six values share one backing array: one allocation, not six (the
// keys are canonical already, and net/http only reads the values).
func (s *Server) rateHeaders(c *gin.Context, keyID string, ql quota.Limits) {
	if st := stateOf(c); st != nil {
		st.rateDue = false
	}
	st := s.cfg.Quota.Status(keyID, ql)
	h := c.Writer.Header()
	var v *[6]string
	if st.LimitRequests > 0 || st.LimitTokens > 0 {
		v = new([6]string)
	}
	if st.LimitRequests > 0 {
		v[0] = strconv.FormatInt(st.LimitRequests, 10)
		v[1] = strconv.FormatInt(max(st.RemainingRequests, 0), 10)
		v[2] = st.ResetRequests.String()
		h["X-Ratelimit-Limit-Requests"] = v[0:1:1]
		h["X-Ratelimit-Remaining-Requests"] = v[1:2:2]
		h["X-Ratelimit-Reset-Requests"] = v[2:3:3]
	}
	if st.LimitTokens > 0 {
		v[3] = strconv.FormatInt(st.LimitTokens, 10)
		v[4] = strconv.FormatInt(max(st.RemainingTokens, 0), 10)
		v[5] = st.ResetTokens.String()
		h["X-Ratelimit-Limit-Tokens"] = v[3:4:4]
		h["X-Ratelimit-Remaining-Tokens"] = v[4:5:5]
		h["X-Ratelimit-Reset-Tokens"] = v[5:6:6]
	}
}

// admitting are the routes whose requests go through admission (the
// pipeline's), which sets the x-ratelimit-* headers.
var admitting = map[string]bool{
	"/v1/chat/completions": true,
	"/v1/messages":         true,
	"/v1/responses":        true,
	"/v1/completions":      true,
	"/v1/embeddings":       true,
}

// lateRateHeaders sets the x-ratelimit-* headers of an answer given
// before admission (which sets them itself): a refusal, the model list.
// The quota status is read only for such answers.
func (s *Server) lateRateHeaders(c *gin.Context) {
	st := stateOf(c)
	if st == nil || !st.rateDue || c.Writer.Written() {
		return
	}
	s.rateHeaders(c, st.principal.KeyID, quotaLimits(st.limits))
}

func rateLimited(le *quota.LimitError) *apiError {
	secs := int(math.Ceil(le.RetryAfter.Seconds()))
	return &apiError{
		Status:     http.StatusTooManyRequests,
		Type:       "requests",
		Code:       "rate_limit_exceeded",
		Message:    le.Error(),
		RetryAfter: max(secs, 1),
	}
}
