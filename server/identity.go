package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// The headers a shared front end names its signed-in user with, by
// default Open WebUI's (ENABLE_FORWARD_USER_INFO_HEADERS).
const (
	DefaultUserHeader      = "X-OpenWebUI-User-Id"
	DefaultUserEmailHeader = "X-OpenWebUI-User-Email"
	DefaultUserNameHeader  = "X-OpenWebUI-User-Name"
)

const endUserKey = "warden.end_user"

// endUser is who a delegate key's request is for.
type endUser struct {
	id, email, name string
}

// identify is the pipeline's identity step, after the body is decoded: a
// key with the delegate scope names the end user of the request, taken
// from the configured header, else from the body (OpenAI's user,
// Anthropic's metadata.user_id: bodyUser). For any other key both are
// ignored: a client must not pick its own quota bucket. An id (or e-mail,
// or name) over 256 bytes or with a control character is a 400; a
// delegate request without a user is a 400 when users are required (the
// key's require_user, else the server's), else it is served as the key
// itself. A blocked user gets 403, and the request is counted against the
// user's requests per minute (the key's were counted at authentication).
func (s *Server) identify(c *gin.Context, bodyUser string) error {
	p := principal(c)
	if !p.Delegates() {
		return nil
	}
	u := endUser{id: c.GetHeader(s.cfg.UserHeader), email: c.GetHeader(s.cfg.UserEmailHeader), name: headerName(c.GetHeader(s.cfg.UserNameHeader))}
	param := s.cfg.UserHeader
	if u.id == "" {
		u.id, param = bodyUser, "user"
	}
	for _, f := range []struct{ param, v string }{
		{param, u.id}, {s.cfg.UserEmailHeader, u.email}, {s.cfg.UserNameHeader, u.name},
	} {
		if err := keys.CheckUser(f.v); err != nil {
			return invalidf(f.param, "Invalid end user in '%s': at most %d bytes of UTF-8 without control characters.", f.param, keys.MaxUserLen)
		}
	}
	if u.id == "" {
		if s.requireUser(p) {
			return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "user_required", Param: "user",
				Message: "This API key serves end users: name the user in the " + s.cfg.UserHeader + " header or the 'user' field."}
		}
		return nil
	}
	if p.Blocks(u.id) {
		return &apiError{Status: http.StatusForbidden, Type: typeInvalidRequest, Code: "user_blocked", Param: "user",
			Message: "This end user is blocked on this API key; ask your Warden admin."}
	}
	c.Set(endUserKey, u)
	if tr := trailOf(c); tr != nil {
		tr.base.EndUser, tr.base.EndUserEmail, tr.base.EndUserName = u.id, u.email, u.name
	}
	if s.cfg.Quota == nil {
		return nil
	}
	err := s.cfg.Quota.CountUser(p.KeyID, u.id, userLimits(s.limits(c)))
	var le *quota.LimitError
	if errors.As(err, &le) {
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.rateLimited.WithLabelValues(limitLabel(le)).Inc()
		}
		return rateLimited(le)
	}
	return err
}

// requireUser is the key's require_user, else the server's.
func (s *Server) requireUser(p *keys.Principal) bool {
	if p.RequireUser != nil {
		return *p.RequireUser
	}
	return s.cfg.RequireUser
}

// userOf is the end user identify named for the request ("" for none).
func userOf(c *gin.Context) string {
	v, _ := c.Get(endUserKey)
	u, _ := v.(endUser)
	return u.id
}

// userLimits are a key's per-user limits as the quota applies them.
func userLimits(l keys.Limits) quota.Limits {
	return quota.Limits{RPM: l.UserRPM, TPM: l.UserTPM, TokensPerDay: l.UserTokensPerDay, TokensPerMonth: l.UserTokensPerMonth, Concurrency: l.UserConcurrency}
}

// limitLabel is the warden_rate_limited_total label of a refusal: the
// limit's name, prefixed "user_" when it was an end user's.
func limitLabel(le *quota.LimitError) string {
	if le.User {
		return "user_" + le.Limit
	}
	return le.Limit
}

// headerName decodes a user's name as Open WebUI sends it: percent-encoded
// (Python's quote, spaces kept), so that names outside ASCII survive the
// header. A value that is not valid percent-encoding is kept as sent.
func headerName(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}
