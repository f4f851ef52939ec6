package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

// liveBackend is the Ollama API of the supervised child wherever it is
// now: the supervisor gives a restarted child a new port.
type liveBackend struct {
	url func() *url.URL
	hc  *http.Client
}

var _ models.Backend = liveBackend{}

func (b liveBackend) c() *api.Client { return api.NewClient(b.url(), b.hc) }

func (b liveBackend) List(ctx context.Context) (*api.ListResponse, error) { return b.c().List(ctx) }
func (b liveBackend) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	return b.c().Show(ctx, req)
}
func (b liveBackend) ListRunning(ctx context.Context) (*api.ProcessResponse, error) {
	return b.c().ListRunning(ctx)
}
func (b liveBackend) Pull(ctx context.Context, req *api.PullRequest, fn api.PullProgressFunc) error {
	return b.c().Pull(ctx, req, fn)
}
func (b liveBackend) Copy(ctx context.Context, req *api.CopyRequest) error {
	return b.c().Copy(ctx, req)
}
func (b liveBackend) Delete(ctx context.Context, req *api.DeleteRequest) error {
	return b.c().Delete(ctx, req)
}
func (b liveBackend) Create(ctx context.Context, req *api.CreateRequest, fn api.CreateProgressFunc) error {
	return b.c().Create(ctx, req, fn)
}
func (b liveBackend) CreateBlob(ctx context.Context, digest string, r io.Reader) error {
	return b.c().CreateBlob(ctx, digest, r)
}
func (b liveBackend) Generate(ctx context.Context, req *api.GenerateRequest, fn api.GenerateResponseFunc) error {
	return b.c().Generate(ctx, req, fn)
}

// modelAlerter queues model alerts (the audit trail's outbox).
type modelAlerter interface {
	ModelAlert(ctx context.Context, a outbox.ModelAlert)
}

// newModelGuard is the serving check of cfg's [models]: the allowlist,
// pins from the config and the database, an alert and a log line when a
// pinned model's digest differs.
func newModelGuard(cfg Config, db *store.DB, alerts modelAlerter, log *slog.Logger) (*models.Guard, error) {
	allow, err := models.ParseAllowlist(cfg.Models.Allow)
	if err != nil {
		return nil, err
	}
	pins, err := cfg.Models.pins()
	if err != nil {
		return nil, err
	}
	return &models.Guard{Allow: allow, Pins: pins, DB: db, OnMismatch: func(ctx context.Context, m models.Mismatch) {
		e := &models.MismatchError{Name: m.Name, Pinned: m.Pinned, Actual: m.Actual}
		log.Warn("alert", "kind", outbox.AlertKindModelDigest, "model", m.Name, "pinned", m.Pinned, "actual", m.Actual)
		alerts.ModelAlert(ctx, outbox.ModelAlert{Kind: outbox.AlertKindModelDigest, Time: m.Time.UTC(), Model: m.Name,
			Pinned: m.Pinned, Actual: m.Actual, Message: e.Error() + ": not served"})
	}}, nil
}

// mismatchCollector exports the requests refused for a model digest
// mismatch, by model.
type mismatchCollector struct {
	g    *models.Guard
	desc *prometheus.Desc
}

func registerModelMetrics(r *prometheus.Registry, g *models.Guard) {
	r.MustRegister(&mismatchCollector{g: g, desc: prometheus.NewDesc("warden_model_digest_mismatch_total",
		"Requests refused (503) because the pinned model's manifest digest is not the pinned one.", []string{"model"}, nil)})
}

func (c *mismatchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *mismatchCollector) Collect(ch chan<- prometheus.Metric) {
	for name, n := range c.g.Mismatches() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), name)
	}
}
