package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/preflight"
	"github.com/warden-llm/warden/safety/store"
)

// errPreflightFailed is the exit status of a preflight with a failed check.
var errPreflightFailed = errors.New("preflight: some checks failed")

func newPreflightCmd(g *globals) *cobra.Command {
	var asJSON, full bool
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check this deployment before it goes online",
		Long: `Preflight checks the deployment against the checklist of docs/operations.md:
exposure (listen address, TLS, allowlist, the backend and other model
servers on this host's LAN addresses), logs (audit sinks reachable, outbox
lag, the audit chain, audit.fail_open), keys (rotation, admin expiry, model
restriction, unused keys), probes, and the host (data dir permissions, user,
the backend's memory and CPU ceiling, the TLS certificate, the clock).

Each check prints pass, warn or fail with its reason and fix. It exits 1 when
any check fails. --full verifies the whole audit chain instead of its tail.`,
		Args: cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, cfg Config) error {
			env := preflightEnv(cfg, db)
			env.Full = full
			if u, err := backendURL(cfg); err == nil {
				env.BackendPort = loopbackPort(u)
				if client, _, closeNS, err := backendClient(cfg); err == nil {
					defer closeNS()
					env.BackendModels = func(ctx context.Context) ([]string, error) { return listModelNames(ctx, client) }
				}
			}
			rep := preflight.Run(cmd.Context(), env)
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Checks []preflight.Result `json:"checks"`
					OK     bool               `json:"ok"`
				}{rep.Checks, rep.OK}); err != nil {
					return err
				}
			} else if err := printPreflight(g.stdout, rep); err != nil {
				return err
			}
			if !rep.OK {
				return errPreflightFailed
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"checks":[{"name","status","reason","fix"}],"ok":bool}`)
	cmd.Flags().BoolVar(&full, "full", false, "verify the whole audit chain, not only its tail")
	return cmd
}

func printPreflight(w io.Writer, rep preflight.Report) error {
	var b strings.Builder
	n := map[preflight.Status]int{}
	for _, c := range rep.Checks {
		n[c.Status]++
		fmt.Fprintf(&b, "%-4s  %-29s %s\n", c.Status, c.Name, c.Reason)
		if c.Fix != "" && c.Status != preflight.Pass {
			fmt.Fprintf(&b, "      %-29s fix: %s\n", "", c.Fix)
		}
	}
	fmt.Fprintf(&b, "\n%d pass, %d warn, %d fail\n", n[preflight.Pass], n[preflight.Warn], n[preflight.Fail])
	_, err := io.WriteString(w, b.String())
	return err
}

// preflightEnv fills the checks' environment from the configuration; the
// backend's isolation is what runtime.isolation will give until serve
// reports the running child's.
func preflightEnv(cfg Config, db *store.DB) *preflight.Env {
	e := &preflight.Env{
		Listen:            cfg.Server.Listen,
		TLSCertFile:       cfg.Server.TLS.CertFile,
		Allow:             cfg.Server.Allow,
		InsecurePlaintext: cfg.Server.InsecurePlaintext,
		TrustedProxies:    cfg.Server.TrustedProxies,
		Isolation:         expectedIsolation(cfg.Runtime),
		FailOpen:          cfg.Audit.FailOpen,
		RotationMaxAge:    cfg.Keys.RotationMaxAge,
		UserLimits:        cfg.Limits.keys(),
		ModelAllow:        cfg.Models.Allow,
		GuardModel:        cfg.Safety.Guard.Model,
		DB:                db,
		DataDir:           cfg.DataDir,
		SkipDirs:          []string{cfg.modelsDir(), filepath.Join(cfg.DataDir, "ollama-home")},
		EUID:              os.Geteuid(),
		NTPSynchronized:   preflight.TimedatectlNTP,
		ProbeMaxAge:       probeMaxAge(cfg.Probe),
		ProbeThreshold:    cfg.Probe.AlertThreshold,
		Now:               time.Now,
	}
	for _, s := range cfg.Audit.Sinks {
		e.Sinks = append(e.Sinks, preflight.Sink{Name: s.Name, Type: s.Type, Network: s.Network, Address: s.Address, URL: s.URL,
			CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile, ServerName: s.ServerName, InsecureSkipVerify: s.InsecureSkipVerify})
	}
	return e
}

func expectedIsolation(rt RuntimeConfig) string {
	switch {
	case rt.OllamaURL != "":
		return "attached"
	case rt.Isolation == "auto" && os.Geteuid() == 0:
		return "netns"
	case rt.Isolation == "auto":
		return "loopback"
	}
	return rt.Isolation
}

// loopbackPort is u's port when u is on a loopback host (a backend on a
// host port), else 0.
func loopbackPort(u *url.URL) int {
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// preflightRunner keeps serve's latest preflight report and reruns the
// checks every interval until Close.
type preflightRunner struct {
	mu     sync.Mutex
	env    *preflight.Env
	latest preflight.Report
	ran    bool
	log    *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

func newPreflightRunner(env *preflight.Env, log *slog.Logger) *preflightRunner {
	return &preflightRunner{env: env, log: log}
}

// Run runs the checks now, keeps the report and logs every failure.
func (p *preflightRunner) Run(ctx context.Context) preflight.Report {
	p.mu.Lock()
	env := *p.env
	p.mu.Unlock()
	rep := preflight.Run(ctx, &env)
	p.mu.Lock()
	p.latest, p.ran = rep, true
	p.mu.Unlock()
	for _, c := range rep.Failed() {
		p.log.Warn("preflight check failed", "check", c.Name, "reason", c.Reason, "fix", c.Fix)
	}
	return rep
}

// backendLister lists a backend's models (Ollama's api.Client).
type backendLister interface {
	List(ctx context.Context) (*api.ListResponse, error)
}

// listModelNames is the names of the backend's models.
func listModelNames(ctx context.Context, b backendLister) ([]string, error) {
	resp, err := b.List(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(resp.Models))
	for _, m := range resp.Models {
		names = append(names, m.Name)
	}
	return names, nil
}

// SetBackendModels sets how the checks list the running backend's models.
func (p *preflightRunner) SetBackendModels(b backendLister) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env.BackendModels = func(ctx context.Context) ([]string, error) { return listModelNames(ctx, b) }
}

// SetBackend records the running child's isolation, pid and host port.
func (p *preflightRunner) SetBackend(isolation string, pid int, u *url.URL) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env.Isolation, p.env.BackendPID, p.env.BackendPort = isolation, pid, loopbackPort(u)
}

// Latest is the last report (false before the first run).
func (p *preflightRunner) Latest() (preflight.Report, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest, p.ran
}

// Start reruns the checks every interval until Close.
func (p *preflightRunner) Start(ctx context.Context, every time.Duration) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.Run(ctx)
			}
		}
	}()
}

// Close stops the reruns and waits for the one in progress.
func (p *preflightRunner) Close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}

// refusal is serve's error when server.require_preflight is on and a
// check fails: every failed check with its fix.
func preflightRefusal(rep preflight.Report) error {
	var b strings.Builder
	b.WriteString("refusing to start: preflight checks failed (server.require_preflight / --require-preflight); run `warden preflight` for all results:")
	for _, c := range rep.Failed() {
		fmt.Fprintf(&b, "\n  %s: %s\n    fix: %s", c.Name, c.Reason, c.Fix)
	}
	return errors.New(b.String())
}

// registerPreflightMetrics exports warden_preflight_check{check,status}:
// 1 for each check's current status, 0 for the others.
func registerPreflightMetrics(r *prometheus.Registry, latest func() (preflight.Report, bool)) {
	r.MustRegister(&preflightCollector{latest: latest})
}

type preflightCollector struct {
	latest func() (preflight.Report, bool)
}

var preflightDesc = prometheus.NewDesc("warden_preflight_check",
	"Latest preflight result: 1 for each check's current status (pass, warn, fail), 0 for the others.",
	[]string{"check", "status"}, nil)

func (c *preflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- preflightDesc }

func (c *preflightCollector) Collect(ch chan<- prometheus.Metric) {
	rep, ok := c.latest()
	if !ok {
		return
	}
	for _, r := range rep.Checks {
		for _, s := range preflight.Statuses {
			v := 0.0
			if r.Status == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(preflightDesc, prometheus.GaugeValue, v, r.Name, string(s))
		}
	}
}
