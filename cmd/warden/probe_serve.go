package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/guard"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/probe"
	"github.com/warden-llm/warden/safety/store"
)

// probeAlerter fires the alert sinks (trail.Trail).
type probeAlerter interface {
	AlertProbe(ctx context.Context, a outbox.ProbeAlert)
}

// handlerTransport sends a request straight to the server's handler, in
// process: serve's scheduled probes take the whole request path (keys,
// quotas, filters, scheduler, audit) without a network hop, whatever
// server.allow or TLS say about the listener.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.RemoteAddr = "127.0.0.1:0"
	req.RequestURI = req.URL.RequestURI()
	if req.Body == nil {
		req.Body = http.NoBody // as a server's request always has one
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// startProbes schedules probe runs every probe.schedule through h, and
// fires alerts on regressions; gl, if set, labels the answers with the
// guard model, its calls waiting for a slot of queue under the probe key.
// Its scheduler's Close stops it; with no schedule it does nothing.
func startProbes(ctx context.Context, cfg Config, db *store.DB, h http.Handler, gl *probe.GuardLabeler, queue *sched.Scheduler, alerts probeAlerter, log *slog.Logger) (*probe.Scheduler, error) {
	s := &probe.Scheduler{Every: cfg.Probe.Schedule}
	if cfg.Probe.Schedule <= 0 {
		return s, nil
	}
	var keyID atomic.Value // the run's probe key id, for the guard's slots
	keyID.Store("")
	if gl != nil {
		gl = &probe.GuardLabeler{Config: gl.Config, Backend: queuedChatter{queue: queue, keyID: func() string { return keyID.Load().(string) }, next: gl.Backend}}
	}
	ps := &probeSetup{db: db, cfg: cfg.Probe, stderr: io.Discard, guard: gl,
		chat: &probe.HTTPChatter{BaseURL: "http://warden.internal", MaxTokens: cfg.Probe.MaxTokens,
			HTTP: &http.Client{Transport: handlerTransport{h}}}}
	s.Run = func(ctx context.Context) {
		// The key is read (and made or rotated) at each run: `warden probe
		// run` may have replaced it since.
		id, token, fresh, err := ensureProbeKey(ctx, db, cfg.DataDir, "system:serve", probeKeyMaxAge(cfg))
		if err != nil {
			log.Error("scheduled probe run: probe key", "err", err)
			return
		}
		ps.keyID, ps.chat.Key, ps.fresh = id, token, fresh
		keyID.Store(id)
		scheduledProbeRun(ctx, ps, cfg.Probe, alerts, log)
	}
	log.Info("probe runs scheduled", "every", cfg.Probe.Schedule, "suite", cfg.Probe.Suite, "alert_threshold", cfg.Probe.AlertThreshold)
	s.Start(ctx)
	return s, nil
}

// scheduledProbeRun runs the configured suite once and alerts on its
// regressions.
func scheduledProbeRun(ctx context.Context, ps *probeSetup, pc ProbeConfig, alerts probeAlerter, log *slog.Logger) {
	rep, err := ps.run(ctx, pc.Suite, pc.Model, pc.Seed, "schedule")
	if err != nil {
		log.Error("scheduled probe run failed", "err", err)
		return
	}
	log.Info("probe run", "run", rep.Run.ID, "model", rep.Run.Model, "pass", rep.Run.Passed, "fail", rep.Run.Failed, "errors", rep.Run.Errors)
	alertRegressions(ctx, rep, pc.AlertThreshold, alerts, log)
}

// alertRegressions fires one alert when rep's rates rose beyond threshold
// since the previous run of its model.
func alertRegressions(ctx context.Context, rep probe.Report, threshold float64, alerts probeAlerter, log *slog.Logger) bool {
	regs := probe.Regressions(rep.Changes, threshold)
	if len(regs) == 0 || rep.Previous == nil {
		return false
	}
	a := outbox.ProbeAlert{Kind: outbox.AlertKindProbe, Message: probe.Describe(regs), Model: rep.Run.Model,
		ModelDigest: rep.Run.ModelDigest, PreviousRunID: rep.Previous.ID, RunID: rep.Run.ID, Suite: rep.Run.Suite,
		Threshold: threshold, Time: time.Now().UTC()}
	for _, r := range regs {
		a.Regressions = append(a.Regressions, outbox.ProbeRegression{Category: r.Category, Metric: r.Metric,
			Before: r.Before.Rate, Now: r.Now.Rate, N: r.Now.N})
	}
	log.Warn("alert", "kind", a.Kind, "run", a.RunID, "model", a.Model, "message", a.Message)
	alerts.AlertProbe(ctx, a)
	return true
}

// listenURL is the URL admin commands on this host reach the listener
// at: an unspecified address is reached on loopback.
func listenURL(addr net.Addr, tls bool) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// probeMaxAge is how old the newest probe run may be before preflight
// calls it stale: two schedules, or 8 days without one.
func probeMaxAge(pc ProbeConfig) time.Duration {
	if pc.Schedule > 0 {
		return 2*pc.Schedule + time.Hour
	}
	return 8 * 24 * time.Hour
}

// queuedChatter runs each guard call of a scheduled probe run on a
// scheduler slot of the guard model under the probe key, as the guard
// stage's own calls wait for one under the request's key: the probe run's
// guard labels take their turn beside the users' requests instead of
// going to the backend past the fair queue.
type queuedChatter struct {
	queue *sched.Scheduler
	keyID func() string // the probe key of the run in progress
	next  guard.Chatter
}

func (q queuedChatter) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	cost := int64(guard.MaxOutputTokens)
	for _, m := range req.Messages {
		cost += int64(len(m.Content))/4 + 16 // server's estimate: a quarter token a byte and 16 a message
	}
	release, _, err := q.queue.Acquire(ctx, req.Model, q.keyID(), cost)
	if err != nil {
		return err
	}
	defer release()
	return q.next.Chat(ctx, req, fn)
}
