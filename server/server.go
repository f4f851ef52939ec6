// Package server is Warden's HTTP surface: the OpenAI-compatible routes, their
// wire types, the middleware chain every request passes, and health checks.
// It reaches the model only through the Backend interface.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/internal/logonce"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/guard"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/preflight"
)

// Backend is what the HTTP layer needs from the model runtime. Streaming
// calls invoke fn for each response in order; the last has Done set.
type Backend interface {
	Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error
	Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error
	Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error)
	List(ctx context.Context) (*api.ListResponse, error)
	Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error)
}

var _ Backend = (*ollama.Client)(nil)

// Config holds the server's settings. New fills zero values with defaults.
type Config struct {
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes int64
	// MaxInflightBodyBytesPerIP bounds the request bodies one client IP
	// may have in flight (declared length, or MaxBodyBytes when none is
	// declared), counted before they are read; beyond it, 429.
	MaxInflightBodyBytesPerIP int64
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second after BodyGrace; a slower body is cut with 408.
	MinBodyRate int64
	BodyGrace   time.Duration
	// MaxOutputTokens is the output cap applied when a request sets none.
	MaxOutputTokens int
	// RequestTimeout bounds every call to the backend.
	RequestTimeout time.Duration
	// WriteTimeout bounds each write to a client: one event of a stream,
	// or a whole answer's body. A client that does not read within it is
	// cut off, and its backend call cancelled.
	WriteTimeout time.Duration
	// KeepAliveInterval is how often an SSE comment is sent while a stream
	// waits for its first token (a model loading, a busy backend).
	KeepAliveInterval time.Duration
	// TrustedProxies may set X-Forwarded-For; none by default, so the
	// client IP is the peer address.
	TrustedProxies []string
	// Models, if set, resolves model names and describes models; else the
	// server reads the Backend's models itself.
	Models ModelCatalog
	// ModelGuard, if set, decides which of the backend's models are
	// served ([models] allow, pins, kept versions).
	ModelGuard ModelGuard
	// ModelAdmin, if set, serves /admin/models to admin keys.
	ModelAdmin ModelAdmin
	// ModelCacheTTL is how long the backend's model list is reused when
	// Models is not set.
	ModelCacheTTL time.Duration
	// Ready, if set, reports whether the backend process is up; /readyz
	// also checks that the model list is readable.
	Ready func() error

	// Keys authenticates every /v1 request. Required: there is no
	// unauthenticated mode.
	Keys Authenticator
	// Quota, if set, holds keys to their request and token limits.
	Quota Limiter
	// DefaultLimits apply where a key sets none (zero: unlimited); their
	// User* fields are the per-user limits of delegate keys.
	DefaultLimits keys.Limits
	// RequireUser refuses a delegate key's request that names no end user
	// (400) unless the key says otherwise; else such a request is served
	// as the key itself.
	RequireUser bool
	// UserHeader names the header a delegate key's end user is taken from
	// (before the body's user field); UserEmailHeader and UserNameHeader
	// are recorded in the audit trail when present. Defaults: Open
	// WebUI's X-OpenWebUI-User-Id, -Email, -Name.
	UserHeader      string
	UserEmailHeader string
	UserNameHeader  string
	// Audit, if set, receives a request record before anything reaches
	// the model and a completion record before the answer is released.
	// When a record cannot be written the request fails with 503, unless
	// AuditFailOpen.
	Audit         Auditor
	AuditFailOpen bool
	// AuditText is the audit writer's text mode; audit.StoreTextRedacted makes
	// the records carry prompts as they were after the safety filter
	// (answers are always recorded as delivered).
	AuditText string

	// Filter, if set, applies the safety policy of each key's profile to
	// prompts and answers.
	Filter *filter.Engine
	// Guard, if set, runs a guard model on prompts and answers (see
	// guard_model.go); it needs Filter, whose profiles act on its
	// categories.
	Guard *guard.Config
	// OnAuthRefused, if set, counts a request refused for its key.
	OnAuthRefused func(clientIP string)
	// OnRequestRefused, if set, counts a request of a valid key answered
	// with a 4xx before it reached the model (invalid, blocked, forbidden,
	// over quota): such requests get no audit records of their own.
	OnRequestRefused func(keyID, clientIP string, status int)

	// Queue, if set, schedules requests fairly onto the backend's slots.
	Queue Queue

	// Metrics, if set, records Prometheus series and serves them on
	// /metrics to admin keys.
	Metrics *Metrics

	// GPU, if set, reports GPU telemetry on /readyz and /admin/gpu.
	GPU GPUReporter

	// Admin, if set, serves the /admin key-management API to admin keys.
	Admin KeyAdmin
	// Usage, if set, reports per-key usage on /admin.
	Usage UsageReader
	// Preflight, if set, reports the latest deployment checklist on
	// /admin/preflight (ok false: not run yet).
	Preflight func() (preflight.Report, bool)
	// Probes, if set, lists the stored probe runs on /admin/probes.
	Probes ProbeRuns

	// HSTS sends Strict-Transport-Security on every response: set it when
	// the listener serves TLS.
	HSTS bool
	// AdminAllow lists the client networks /admin and /metrics answer;
	// empty: loopback only.
	AdminAllow []netip.Prefix
	// MaxRPS, if positive, sheds requests past this many a second (burst
	// of one second) with 503, before any key lookup.
	MaxRPS float64
	// AuthFailLimit, if positive, is how many failed authentications a
	// minute an address may make: past it, 429 for the rest of the minute
	// without a key lookup, and 403 for AuthBan if it keeps on.
	AuthFailLimit int
	AuthBan       time.Duration
	// CORSOrigins lists the browser origins allowed to call the API
	// (exact "https://host:port" strings); none: no CORS headers at all.
	CORSOrigins []string

	// Logger receives the server's logs; nil discards them. Repeated
	// identical errors are logged once per LogRepeatInterval with a count.
	Logger            *slog.Logger
	LogRepeatInterval time.Duration
	// Now is the clock of readiness and log intervals (nil = time.Now).
	Now func() time.Time
}

// Defaults.
const (
	DefaultMaxBodyBytes              = 1 << 20
	DefaultMaxInflightBodyBytesPerIP = 8 << 20
	DefaultMinBodyRate               = 1 << 10
	DefaultBodyGrace                 = 10 * time.Second
	DefaultMaxOutputTokens           = 2048
	DefaultRequestTimeout            = 10 * time.Minute
	DefaultKeepAliveInterval         = 5 * time.Second
	DefaultWriteTimeout              = 30 * time.Second
	DefaultModelCacheTTL             = 5 * time.Second
)

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxInflightBodyBytesPerIP <= 0 {
		c.MaxInflightBodyBytesPerIP = DefaultMaxInflightBodyBytesPerIP
	}
	if c.MinBodyRate <= 0 {
		c.MinBodyRate = DefaultMinBodyRate
	}
	if c.BodyGrace <= 0 {
		c.BodyGrace = DefaultBodyGrace
	}
	if c.MaxOutputTokens <= 0 {
		c.MaxOutputTokens = DefaultMaxOutputTokens
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ModelCacheTTL <= 0 {
		c.ModelCacheTTL = DefaultModelCacheTTL
	}
	if c.UserHeader == "" {
		c.UserHeader = DefaultUserHeader
	}
	if c.UserEmailHeader == "" {
		c.UserEmailHeader = DefaultUserEmailHeader
	}
	if c.UserNameHeader == "" {
		c.UserNameHeader = DefaultUserNameHeader
	}
}

// Server serves the OpenAI-compatible API in front of a Backend.
type Server struct {
	cfg     Config
	backend Backend
	models  *catalog
	log     *slog.Logger
	engine  *gin.Engine
	cut     context.Context // ended by CutRequests
	cutAll  context.CancelFunc

	repeated   *logonce.Limiter // repeated identical errors: one line per interval
	auditState auditHealth      // the last append's outcome, for /readyz
	bodies     *bodyBudget      // request bodies in flight per client IP
	keyBodies  keyBodies        // requests with a body in flight per key
	shedder    *bucket          // nil: no MaxRPS
	bans       *banList         // nil: no AuthFailLimit
	guard      *guardStage      // nil: no guard model

	untrustedProxy sync.Once // the warning about a same-host proxy trusted_proxies does not name
}

// New returns a server for backend.
func New(backend Backend, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Keys == nil {
		return nil, errors.New("server: no key authenticator configured")
	}
	if cfg.Guard != nil && cfg.Filter == nil {
		return nil, errors.New("server: the guard model needs the safety filter")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		backend: backend,
		models:  newCatalog(cfg.Models, backend, cfg.ModelCacheTTL, cfg.ModelGuard),
		log:     logger,

		repeated: &logonce.Limiter{Interval: cfg.LogRepeatInterval, Now: cfg.Now},
		bodies:   newBodyBudget(cfg.MaxInflightBodyBytesPerIP),
	}
	s.cut, s.cutAll = context.WithCancel(context.Background())
	if cfg.MaxRPS > 0 {
		s.shedder = newBucket(cfg.MaxRPS)
	}
	if cfg.AuthFailLimit > 0 {
		s.bans = newBanList(cfg.AuthFailLimit, cfg.AuthBan)
	}
	s.guard = newGuardStage(cfg.Guard, cfg.Metrics)
	cfg.Metrics.watchBodies(s.bodies.inFlight)
	if err := s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// routes registers every route. Ollama's own /api/* routes are never
// exposed: anything not listed here is a 404.
func (s *Server) routes() error {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	if err := e.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		return err
	}
	if s.cfg.HSTS { // first, so that every answer has it, refusals included
		e.Use(hsts)
	}
	e.Use(s.withRequestID, s.recoverPanic, s.accessLog, securityHeaders, s.limitBody, s.paceBody)
	e.NoRoute(s.h(func(*gin.Context) error {
		return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "unknown_url", Message: "Unknown request URL."}
	}))
	e.NoMethod(s.h(func(*gin.Context) error {
		return &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: "method_not_allowed", Message: "Method not allowed for this URL."}
	}))

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	// Every /v1 route needs a key with the route's scope. Safety filters
	// join this chain later.
	v1 := e.Group("/v1", s.shed, s.cors, s.authenticate, s.trackInFlight, s.auditRequest, s.holdKeyBodies)
	v1.POST("/chat/completions", s.requireScope(keys.ScopeChat), s.h(s.chat))
	// One capability, three wire formats: chat completions, Anthropic's
	// Messages (errors in its shape, see errorPayload) and OpenAI's
	// Responses.
	v1.POST("/messages", s.requireScope(keys.ScopeChat), s.h(s.messages))
	v1.POST("/messages/count_tokens", s.requireScope(keys.ScopeChat), s.h(s.countTokens))
	v1.POST("/responses", s.requireScope(keys.ScopeChat), s.h(s.responses))
	v1.POST("/completions", s.requireScope(keys.ScopeCompletions), s.h(s.completions))
	v1.POST("/embeddings", s.requireScope(keys.ScopeEmbeddings), s.h(s.embeddings))
	v1.GET("/models", s.requireScope(keys.ScopeModels), s.h(s.listModels))
	v1.GET("/models/*id", s.requireScope(keys.ScopeModels), s.h(s.getModel))
	// A browser's CORS preflight carries no key: cors answers it for the
	// configured origins; anything else is the 405 it would be without.
	e.OPTIONS("/v1/*path", s.shed, s.cors, s.h(func(*gin.Context) error {
		return &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: "method_not_allowed", Message: "Method not allowed for this URL."}
	}))
	s.adminRoutes(e)
	if s.cfg.Filter != nil {
		e.POST("/admin/safety/reload", s.adminOnly, s.shed, s.authenticate, s.requireScope(keys.ScopeAdmin), s.h(s.adminReloadSafety))
	}
	if s.cfg.Metrics != nil {
		e.GET("/metrics", s.adminOnly, s.shed, s.authenticate, s.requireScope(keys.ScopeAdmin), s.metricsHandler)
	}

	s.engine = e
	return nil
}

// h adapts a handler that returns an error.
func (s *Server) h(fn func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			s.writeError(c, err)
		}
	}
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz says whether the server can serve: the backend is up, its model
// list readable, the audit trail writable. Without an admin key it says
// only that (status and "ready" or "unavailable"); an admin key also gets
// the details: the causes, the model count and the GPU status.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	details := gin.H{}
	fail := func(part, detail string, err error) {
		details[part] = detail
		s.repeated.Log(ctx, s.log, slog.LevelWarn, "readyz: not ready", "part", part, "err", err)
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			fail("backend", err.Error(), err)
		}
	}
	if details["backend"] == nil {
		if list, err := s.backend.List(ctx); err != nil {
			fail("backend", "model list unreadable", err)
		} else {
			details["backend"], details["models"] = "ok", len(list.Models)
		}
	}
	if s.cfg.Audit != nil {
		if err := s.auditHealthy(); err != nil {
			fail("audit", "the audit trail cannot be written", err)
		} else {
			details["audit"] = "ok"
		}
	}
	status, code := "ready", http.StatusOK
	if details["backend"] != "ok" || (s.cfg.Audit != nil && details["audit"] != "ok") {
		status, code = "unavailable", http.StatusServiceUnavailable
	}
	if !s.readyzAdmin(c) {
		c.JSON(code, gin.H{"status": status})
		return
	}
	details["status"] = status
	if s.cfg.GPU != nil {
		details["gpu"] = s.cfg.GPU.Status() // "no GPU: ..." is a detail, not a failure
	}
	c.JSON(code, details)
}

// readyzAdmin reports whether the request carries an admin key. /readyz
// needs none, so a missing key is no refusal; a wrong one is counted as
// one.
func (s *Server) readyzAdmin(c *gin.Context) bool {
	token := bearer(c.GetHeader("Authorization"))
	if token == "" {
		token = strings.TrimSpace(c.GetHeader("X-Api-Key"))
	}
	if token == "" {
		return false
	}
	p, err := s.cfg.Keys.Authenticate(token)
	if err != nil || p == nil {
		if s.cfg.OnAuthRefused != nil {
			s.cfg.OnAuthRefused(c.ClientIP())
		}
		return false
	}
	return p.Allows(keys.ScopeAdmin)
}
