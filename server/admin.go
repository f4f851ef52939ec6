package server

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// KeyAdmin is what the admin API needs from the key store: the same
// operations as the `warden keys` commands.
type KeyAdmin interface {
	Create(ctx context.Context, actor string, s keys.Spec) (keys.Key, string, error)
	Rotate(ctx context.Context, actor, id string, grace time.Duration) (keys.Key, string, error)
	Revoke(ctx context.Context, actor, id string) error
	Update(ctx context.Context, actor, id string, ch keys.Change) error
	Get(ctx context.Context, id string) (keys.Key, error)
	List(ctx context.Context) ([]keys.Key, error)
}

// GPUReporter is the GPU telemetry the server shows.
type GPUReporter interface {
	Latest() (gpu.Snapshot, bool)
	Status() string
}

var _ GPUReporter = (*gpu.Monitor)(nil)

// UsageReader reports a key's token usage, and its end users'.
type UsageReader interface {
	Usage(ctx context.Context, keyID string) (quota.Usage, error)
	UserUsage(ctx context.Context, keyID string) ([]quota.UserUsage, error)
}

// UserBlocker blocks and unblocks a delegate key's end users; the admin
// API serves block-user and unblock-user when Admin implements it.
type UserBlocker interface {
	BlockUser(ctx context.Context, actor, id, user string) error
	UnblockUser(ctx context.Context, actor, id, user string) error
}

var (
	_ KeyAdmin    = (*keys.Manager)(nil)
	_ UsageReader = (*quota.Limiter)(nil)
	_ UserBlocker = keys.Admin{}
)

// adminRoutes registers /admin: key management for keys with the admin
// scope, with the CLI's semantics. Actions are recorded with the admin
// key's id as the actor.
func (s *Server) adminRoutes(e *gin.Engine) {
	if s.cfg.Admin == nil {
		return
	}
	a := e.Group("/admin", s.adminOnly, s.shed, s.authenticate, s.requireScope(keys.ScopeAdmin))
	a.GET("/keys", s.h(s.adminListKeys))
	a.POST("/keys", s.h(s.adminCreateKey))
	a.GET("/keys/:id", s.h(s.adminGetKey))
	a.POST("/keys/:id/rotate", s.h(s.adminRotateKey))
	a.POST("/keys/:id/revoke", s.h(s.adminRevokeKey))
	a.PATCH("/keys/:id", s.h(s.adminUpdateKey))
	a.PUT("/keys/:id/limits", s.h(s.adminUpdateKey)) // the route's name before PATCH
	a.GET("/keys/:id/usage", s.h(s.adminUsage))
	a.GET("/keys/:id/users", s.h(s.adminUsers))
	if _, ok := s.cfg.Admin.(UserBlocker); ok {
		a.POST("/keys/:id/block-user", s.h(s.adminBlockUser(true)))
		a.POST("/keys/:id/unblock-user", s.h(s.adminBlockUser(false)))
	}
	a.GET("/gpu", s.h(s.adminGPU))
	if s.cfg.Preflight != nil {
		a.GET("/preflight", s.h(s.adminPreflight))
	}
	if s.cfg.ModelAdmin != nil {
		s.adminModelRoutes(a)
	}
	if s.cfg.Probes != nil {
		a.GET("/probes", s.h(s.adminProbes))
	}
}

// adminPreflight reports the latest preflight run (at serve start, then
// hourly); 503 before the first.
func (s *Server) adminPreflight(c *gin.Context) error {
	rep, ok := s.cfg.Preflight()
	if !ok {
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "preflight_pending", Message: "The preflight checks have not run yet."}
	}
	c.JSON(http.StatusOK, rep)
	return nil
}

// adminGPU reports the latest GPU sample; without a GPU it says why.
func (s *Server) adminGPU(c *gin.Context) error {
	out := gin.H{"status": "not monitored", "available": false}
	if s.cfg.GPU != nil {
		snap, ok := s.cfg.GPU.Latest()
		out = gin.H{"status": s.cfg.GPU.Status(), "available": ok}
		if ok {
			out["snapshot"] = snap
		}
	}
	c.JSON(http.StatusOK, out)
	return nil
}

func adminActor(c *gin.Context) string { return "key:" + principal(c).KeyID }

// adminError maps the key store's errors; anything else goes to toAPIError.
func adminError(err error) error {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "key_not_found", Param: "id", Message: "No key with that id."}
	case errors.Is(err, keys.ErrRevoked):
		return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Code: "key_revoked", Param: "id", Message: "The key is revoked."}
	}
	return err
}

type newKeyBody struct {
	Name    string      `json:"name"`
	Scopes  []string    `json:"scopes"`
	Models  []string    `json:"models"`
	Expires string      `json:"expires"` // "90d", "720h"; empty: never
	Limits  keys.Limits `json:"limits"`
	Weight  int         `json:"weight"`  // 0: 1
	Profile string      `json:"profile"` // "": the default profile
	// AllowCIDRs are the client networks the key may be used from; empty:
	// any address.
	AllowCIDRs []string `json:"allow_cidrs"`
	// RequireUser overrides keys.require_user for a delegate key (null:
	// the configured default).
	RequireUser *bool `json:"require_user"`
}

type secretBody struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func (s *Server) adminCreateKey(c *gin.Context) error {
	var b newKeyBody
	if err := decodeJSON(c.Request.Body, &b); err != nil {
		return err
	}
	exp, err := keys.ParseAge(b.Expires)
	if err != nil {
		return invalidf("expires", "Invalid 'expires': %v.", err)
	}
	spec := keys.Spec{Name: b.Name, Models: b.Models, Expires: exp, Limits: b.Limits,
		Weight: b.Weight, Profile: b.Profile, AllowCIDRs: b.AllowCIDRs, RequireUser: b.RequireUser}
	for _, sc := range b.Scopes {
		spec.Scopes = append(spec.Scopes, keys.Scope(sc))
	}
	if err := spec.Validate(); err != nil {
		return invalidf("", "Invalid key: %v.", err)
	}
	if err := s.knownProfile(spec.Profile); err != nil {
		return err
	}
	k, token, err := s.cfg.Admin.Create(c.Request.Context(), adminActor(c), spec)
	if err != nil {
		return adminError(err)
	}
	c.JSON(http.StatusCreated, secretBody{ID: k.ID, Key: token})
	return nil
}

func (s *Server) adminListKeys(c *gin.Context) error {
	ks, err := s.cfg.Admin.List(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": ks})
	return nil
}

func (s *Server) adminGetKey(c *gin.Context) error {
	k, err := s.cfg.Admin.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		return adminError(err)
	}
	c.JSON(http.StatusOK, k)
	return nil
}

func (s *Server) adminRotateKey(c *gin.Context) error {
	var b struct {
		Grace *string `json:"grace"` // default 24h, as the CLI
	}
	if c.Request.ContentLength != 0 {
		if err := decodeJSON(c.Request.Body, &b); err != nil {
			return err
		}
	}
	grace := 24 * time.Hour
	if b.Grace != nil {
		g, err := keys.ParseAge(*b.Grace)
		if err != nil {
			return invalidf("grace", "Invalid 'grace': %v.", err)
		}
		grace = g
	}
	k, token, err := s.cfg.Admin.Rotate(c.Request.Context(), adminActor(c), c.Param("id"), grace)
	if err != nil {
		return adminError(err)
	}
	c.JSON(http.StatusOK, secretBody{ID: k.ID, Key: token})
	return nil
}

func (s *Server) adminRevokeKey(c *gin.Context) error {
	id := c.Param("id")
	if err := s.cfg.Admin.Revoke(c.Request.Context(), adminActor(c), id); err != nil {
		return adminError(err)
	}
	return s.adminGetKey(c)
}

// updateBody is the body of PATCH /admin/keys/{id} (and of its older name
// PUT /admin/keys/{id}/limits): the limits, weight and profile it names
// change, the others keep their value. A field that is absent or null is
// unchanged; a limit of 0 means the configured default.
type updateBody struct {
	RPM             *int64 `json:"rpm"`
	TPM             *int64 `json:"tpm"`
	TokensPerDay    *int64 `json:"tokens_per_day"`
	TokensPerMonth  *int64 `json:"tokens_per_month"`
	Concurrency     *int64 `json:"concurrency"`
	MaxOutputTokens *int64 `json:"max_output_tokens"`
	MaxOutputChars  *int64 `json:"max_output_chars"`
	MaxInputTokens  *int64 `json:"max_input_tokens"`
	// The per-user limits of a delegate key.
	UserRPM            *int64 `json:"user_rpm"`
	UserTPM            *int64 `json:"user_tpm"`
	UserTokensPerDay   *int64 `json:"user_tokens_per_day"`
	UserTokensPerMonth *int64 `json:"user_tokens_per_month"`
	UserConcurrency    *int64 `json:"user_concurrency"`
	// RequireUser sets the key's require_user; clearing it (back to the
	// configured default) is `warden keys update --require-user default`.
	RequireUser *bool   `json:"require_user"`
	Weight      *int    `json:"weight"`
	Profile     *string `json:"profile"`
	// AllowCIDRs replaces the key's client networks; [] allows any address
	// again.
	AllowCIDRs *[]string `json:"allow_cidrs"`
}

// updateFields are updateBody's JSON names: PATCH refuses any other, so a
// misspelt or nested field is an error instead of a change of nothing.
var updateFields = map[string]bool{
	"rpm": true, "tpm": true, "tokens_per_day": true, "tokens_per_month": true, "concurrency": true,
	"max_output_tokens": true, "max_output_chars": true, "max_input_tokens": true, "weight": true, "profile": true,
	"allow_cidrs": true, "user_rpm": true, "user_tpm": true, "user_tokens_per_day": true,
	"user_tokens_per_month": true, "user_concurrency": true, "require_user": true,
}

// decodeUpdate reads an update body. Unknown fields are refused on PATCH;
// the PUT route ignores them, as it always did.
func decodeUpdate(c *gin.Context) (updateBody, error) {
	var b updateBody
	if c.Request.Method != http.MethodPatch {
		return b, decodeJSON(c.Request.Body, &b)
	}
	var fields map[string]json.RawMessage
	if err := decodeJSON(c.Request.Body, &fields); err != nil {
		return b, err
	}
	if fields == nil { // the body was null
		return b, &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "Invalid request: expected a JSON object, got null."}
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !updateFields[name] {
			return b, invalidf(name, "Unknown field '%s': a key update takes %s.", name, strings.Join(slices.Sorted(maps.Keys(updateFields)), ", "))
		}
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, jsonError(err)
	}
	return b, nil
}

// adminUpdateKey changes the limits, weight and profile the body names and
// keeps the others, as `warden keys update` does.
func (s *Server) adminUpdateKey(c *gin.Context) error {
	b, err := decodeUpdate(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	id := c.Param("id")
	k, err := s.cfg.Admin.Get(ctx, id)
	if err != nil {
		return adminError(err)
	}
	l := k.Limits
	for _, f := range []struct {
		src *int64
		dst *int64
	}{
		{b.RPM, &l.RPM}, {b.TPM, &l.TPM}, {b.TokensPerDay, &l.TokensPerDay}, {b.TokensPerMonth, &l.TokensPerMonth},
		{b.Concurrency, &l.Concurrency}, {b.MaxOutputTokens, &l.MaxOutputTokens},
		{b.MaxOutputChars, &l.MaxOutputChars}, {b.MaxInputTokens, &l.MaxInputTokens},
		{b.UserRPM, &l.UserRPM}, {b.UserTPM, &l.UserTPM}, {b.UserTokensPerDay, &l.UserTokensPerDay},
		{b.UserTokensPerMonth, &l.UserTokensPerMonth}, {b.UserConcurrency, &l.UserConcurrency},
	} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if b.AllowCIDRs != nil {
		if err := (keys.Change{AllowCIDRs: b.AllowCIDRs}).Validate(); err != nil {
			return invalidf("allow_cidrs", "Invalid 'allow_cidrs': %v.", err)
		}
	}
	ch := keys.Change{Limits: &l, Weight: b.Weight, Profile: b.Profile, AllowCIDRs: b.AllowCIDRs, RequireUser: b.RequireUser}
	if err := ch.Validate(); err != nil {
		return invalidf("", "Invalid limits: %v.", err)
	}
	if b.Profile != nil {
		if err := s.knownProfile(*b.Profile); err != nil {
			return err
		}
	}
	if err := s.cfg.Admin.Update(ctx, adminActor(c), id, ch); err != nil {
		return adminError(err)
	}
	return s.adminGetKey(c)
}

func (s *Server) adminUsage(c *gin.Context) error {
	ctx := c.Request.Context()
	id := c.Param("id")
	if _, err := s.cfg.Admin.Get(ctx, id); err != nil {
		return adminError(err)
	}
	if s.cfg.Usage == nil {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Message: "Usage is not tracked: quotas are off."}
	}
	u, err := s.cfg.Usage.Usage(ctx, id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "usage": u})
	return nil
}

// adminUsers lists a key's end users: usage today and this month, requests
// in flight, when last seen (GET /admin/keys/{id}/users).
func (s *Server) adminUsers(c *gin.Context) error {
	ctx := c.Request.Context()
	id := c.Param("id")
	k, err := s.cfg.Admin.Get(ctx, id)
	if err != nil {
		return adminError(err)
	}
	if s.cfg.Usage == nil {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Message: "Usage is not tracked: quotas are off."}
	}
	us, err := s.cfg.Usage.UserUsage(ctx, id)
	if err != nil {
		return err
	}
	if us == nil {
		us = []quota.UserUsage{}
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "object": "list", "data": us, "blocked_users": k.BlockedUsers})
	return nil
}

// adminBlockUser blocks (or unblocks) the end user the body names:
// {"user": "..."}. The user id is in the body, not the path: it may hold
// any printable character.
func (s *Server) adminBlockUser(block bool) func(*gin.Context) error {
	return func(c *gin.Context) error {
		var b struct {
			User string `json:"user"`
		}
		if err := decodeJSON(c.Request.Body, &b); err != nil {
			return err
		}
		if b.User == "" {
			return missing("user")
		}
		if err := keys.CheckUser(b.User); err != nil {
			return invalidf("user", "Invalid 'user': at most %d bytes of UTF-8 without control characters.", keys.MaxUserLen)
		}
		bl := s.cfg.Admin.(UserBlocker)
		do := bl.UnblockUser
		if block {
			do = bl.BlockUser
		}
		if err := do(c.Request.Context(), adminActor(c), c.Param("id"), b.User); err != nil {
			return adminError(err)
		}
		return s.adminGetKey(c)
	}
}
