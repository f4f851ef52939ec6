package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/trail"
	"github.com/warden-llm/warden/server"
)

// registerMetrics adds the series of the parts cmd wires: backend restarts
// and the audit writer's counters.
func registerMetrics(r *prometheus.Registry, be *ollama.Runtime, tr *trail.Trail, client *ollama.Client) {
	registerRestarts(r, be.Supervised(), be.Restarts)
	registerAudit(r, tr, client)
}

// registerRestarts counts a supervised child's restarts.
func registerRestarts(r *prometheus.Registry, supervised bool, restarts func() int) {
	if supervised {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "warden_backend_restarts_total", Help: "Times the Ollama child was restarted after it died.",
		}, func() float64 { return float64(restarts()) }))
	}
}

// registerAudit adds the audit writer's counters and the client's slot resets.
func registerAudit(r *prometheus.Registry, tr *trail.Trail, client *ollama.Client) {
	stat := func(name, help string, v func() int64) {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v()) }))
	}
	stat("warden_audit_records_total", "Audit records committed.", func() int64 { return tr.Writer().Stats().Records })
	stat("warden_audit_commits_total", "Audit transactions committed (records are group-committed).", func() int64 { return tr.Writer().Stats().Commits })
	stat("warden_audit_failures_total", "Audit transactions that failed (their requests got 503).", func() int64 { return tr.Writer().Stats().Failures })
	stat("warden_backend_slot_resets_total", "Models unloaded because Ollama lost a slot to an abandoned stream (an upstream bug).", client.SlotResets)
	registerOutbox(r, tr)
}

// registerOutbox exports the outbox's fill level (read from the database at
// each scrape) and the messages dropped at its cap.
func registerOutbox(r *prometheus.Registry, tr *trail.Trail) {
	state := func() outbox.State {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, _ := tr.OutboxState(ctx)
		return st
	}
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warden_outbox_bytes", Help: "Bytes waiting in the outbox for the forwarding sinks (cap: audit.outbox_max_bytes).",
	}, func() float64 { return float64(state().Bytes) }))
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warden_outbox_max_bytes", Help: "The outbox's cap, audit.outbox_max_bytes.",
	}, func() float64 { return float64(state().MaxBytes) }))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "warden_outbox_dropped_total", Help: "Undelivered outbox messages dropped at the cap (audit.outbox_full = drop_oldest).",
	}, func() float64 { return float64(state().Dropped) }))
}

// registerGateMetrics exports whether GPU admission pauses dispatch.
func registerGateMetrics(r *prometheus.Registry, g *gpu.Gate) {
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warden_gpu_dispatch_paused", Help: "1 while dispatch to the backend is paused because a GPU is too hot.",
	}, func() float64 {
		if g.Paused() {
			return 1
		}
		return 0
	}))
}

// registerQuotaMetrics exports the usage writes that failed (each is
// retried; a rising count means the database refuses writes).
func registerQuotaMetrics(r *prometheus.Registry, l *quota.Limiter) {
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "warden_usage_write_failures_total", Help: "Usage (token count) writes that failed; each is retried.",
	}, func() float64 { return float64(l.WriteFailures()) }))
}

// serveMetrics serves /metrics without a key on its own listener and
// returns the function that stops it.
func serveMetrics(addr string, m *server.Metrics, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}

// connMetrics are the API listener's counters.
type connMetrics struct {
	refused        *prometheus.CounterVec // closed at accept, by reason
	headerTimeouts prometheus.Counter     // cut before their headers arrived
}

func newConnMetrics() connMetrics {
	return connMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_connections_refused_total", Help: "Connections closed at accept: outside server.allow (not_allowed) or over a connection ceiling (too_many).",
		}, []string{"reason"}),
		headerTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_header_timeouts_total", Help: "Connections closed because the client did not finish a request's headers (or its TLS handshake) within server.read_header_timeout.",
		}),
	}
}

// register adds the listener's series.
func (m connMetrics) register(r *prometheus.Registry, open func() int) {
	r.MustRegister(m.refused, m.headerTimeouts, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warden_open_connections", Help: "Connections open on the API listener.",
	}, func() float64 { return float64(open()) }))
}
