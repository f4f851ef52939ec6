package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/runtime/gpu"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/probe"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/trail"
	"github.com/warden-llm/warden/server"
	"github.com/warden-llm/warden/server/listener"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	var requirePreflight bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the backend and serve the OpenAI-compatible API",
		Long: `Serve starts Ollama as a child process on a loopback port (or attaches to
runtime.ollama_url), imports the demo model when the backend has none, and
serves the OpenAI-compatible API on server.listen (127.0.0.1:8080 by default).

It runs the preflight checks at start and hourly (GET /admin/preflight,
warden_preflight_check); with --require-preflight or
server.require_preflight = true it refuses to start while one fails.

SIGINT or SIGTERM stops accepting connections, lets streams in flight finish
up to server.drain_timeout, then stops the child.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Server.Listen = listen
			}
			if requirePreflight {
				cfg.Server.RequirePreflight = true
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, g.logger(cfg.Log), g.stdout)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default 127.0.0.1:8080)")
	cmd.Flags().BoolVar(&requirePreflight, "require-preflight", false, "refuse to start while a preflight check fails (server.require_preflight)")
	return cmd
}

// startBackend attaches to runtime.ollama_url, or starts Ollama as a
// supervised child.
func startBackend(ctx context.Context, cfg Config, log *slog.Logger) (*ollama.Runtime, error) {
	if cfg.Runtime.OllamaURL != "" {
		rt, err := ollama.Attach(cfg.Runtime.OllamaURL)
		if err != nil {
			return nil, err
		}
		log.Info("attaching to a running ollama; it is not supervised", "url", rt.URL().Redacted(), "start_timeout", cfg.Runtime.StartTimeout)
		if err := rt.WaitHealthy(ctx, cfg.Runtime.StartTimeout); err != nil {
			return nil, err
		}
		return rt, nil
	}
	return ollama.Start(ctx, ollama.Config{
		Bin:           cfg.Runtime.OllamaBin,
		DataDir:       cfg.DataDir,
		ModelsDir:     cfg.modelsDir(),
		ContextLength: cfg.Runtime.ContextLength,
		NumParallel:   cfg.Runtime.Parallel,
		MaxQueue:      cfg.Runtime.MaxQueue,
		KeepAlive:     cfg.Runtime.KeepAlive,
		StartTimeout:  cfg.Runtime.StartTimeout,
		Isolation:     cfg.Runtime.Isolation,
		User:          cfg.Runtime.User,
		ParentEnv:     os.LookupEnv,
		Logger:        log.With("component", "ollama"),
	})
}

func serve(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	db, err := store.Open(ctx, cfg.DataDir, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := firstRun(ctx, &keys.Manager{DB: db}, cfg, stdout); err != nil {
		return err
	}
	cache := keys.NewCache(db, cfg.Keys.PollInterval, time.Now)
	cache.Logger = log.With("component", "keys")
	if err := cache.Start(ctx); err != nil {
		return fmt.Errorf("load keys: %w", err)
	}
	defer cache.Close()
	tr, err := trail.New(db, cfg.trailConfig(log))
	if err != nil {
		return err
	}
	if err := tr.Start(ctx); err != nil {
		return err
	}
	defer func() {
		if err := tr.Close(context.Background()); err != nil {
			log.Error("close audit trail", "err", err)
		}
	}()
	// The checklist runs before the listener and the child: a deployment
	// that must not run starts nothing.
	pre := newPreflightRunner(preflightEnv(cfg, db), log.With("component", "preflight"))
	if rep := pre.Run(ctx); !rep.OK && cfg.Server.RequirePreflight {
		return preflightRefusal(rep)
	}

	limiter := quota.New(db, quota.Config{Logger: log.With("component", "quota")})
	defer func() {
		if err := limiter.Close(context.Background()); err != nil {
			log.Error("flush usage", "err", err)
		}
	}()

	// TLS files and the listener before starting a child: a bad
	// certificate or a taken port fails fast.
	tlsConf, err := startTLS(ctx, cfg.Server.TLS, log.With("component", "tls"))
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer tcp.Close()
	allow, err := listener.ParseAllow("server.allow", cfg.Server.Allow)
	if err != nil {
		return err
	}
	adminAllow, err := listener.ParseAllow("admin.allow", cfg.Admin.Allow)
	if err != nil {
		return err
	}
	conns := newConnMetrics()
	ln := guardListener(tcp, cfg.Server, allow, conns, tr.Refused)

	be, err := startBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := be.Close(stopCtx); err != nil {
			log.Error("stop ollama", "err", err)
		}
	}()

	log.Info("backend isolation", "isolation", be.Isolation())
	// Rerun with the running child's isolation, pid and port; then hourly.
	pre.SetBackend(be.Isolation(), be.PGID(), be.URL())
	pre.SetBackendModels(api.NewClient(be.URL(), &http.Client{Transport: be.Transport()}))
	pre.Run(ctx)
	pre.Start(ctx, time.Hour)
	defer pre.Close()
	if err := writeBackendURL(cfg.DataDir, be.URL()); err != nil {
		return err
	}
	hc := &http.Client{Transport: be.Transport()}
	client := ollama.NewClient(be.URL, hc)
	client.Logger = log.With("component", "ollama")
	// Stops the slot checks the client runs after abandoned streams; the
	// HTTP server has drained by the time deferred calls run.
	defer func() { _ = client.Close(context.Background()) }()
	if cfg.Runtime.DemoModel {
		imported, err := models.EnsureDemo(ctx, api.NewClient(be.URL(), hc))
		if err != nil {
			return fmt.Errorf("demo model: %w", err)
		}
		if imported {
			log.Info("imported the demo model: the backend had none", "model", models.DemoName)
		}
	}

	// GPU admission holds the queue: no dispatch while a GPU is too hot,
	// no load of a model that does not fit in free VRAM. It decides once
	// per sample and kicks the scheduler; without a GPU it holds nothing.
	gpuLog := log.With("component", "gpu")
	onAlert := trail.AlertHook(ctx, gpuLog, tr)
	catalog := models.NewCatalog(client, models.Config{Parallel: cfg.Runtime.Parallel,
		ContextLength: cfg.Runtime.ContextLength, Slots: cfg.Runtime.ModelSlots})
	gate := gpu.NewGate(&gpu.Admission{
		HeadroomBytes: uint64(cfg.GPU.VRAMHeadroom),
		TempLimitC:    uint32(cfg.GPU.TempLimit),
		TempResumeC:   uint32(cfg.GPU.TempResume),
		StaleAfter:    max(gpu.DefaultStaleAfter, 5*cfg.GPU.Interval),
		OnAlert:       onAlert,
	}, catalog)
	gate.OnAlert, gate.Logger = onAlert, gpuLog
	queue := sched.New(sched.Config{
		Slots:          catalog.Slots,
		Prefetch:       cfg.Runtime.Prefetch,
		Weight:         cache.Weight,
		Gate:           gate.Open,
		MaxQueue:       cfg.Sched.MaxQueue,
		MaxQueuePerKey: cfg.Sched.MaxQueuePerKey,
		QueueTimeout:   cfg.Sched.QueueTimeout,
	})
	gate.OnChange = queue.Kick

	monitor := gpu.NewMonitor(gpu.NewSystemNVML(be.PGID), cfg.GPU.Interval)
	monitor.Logger = gpuLog
	monitor.OnSample = func(snap gpu.Snapshot, ok bool) {
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		gate.Update(uctx, snap, ok)
	}
	monitor.Start(ctx)
	defer monitor.Close()

	guard, err := newModelGuard(cfg, db, tr, log.With("component", "models"))
	if err != nil {
		return err
	}
	governor, err := newGovernor(cfg, liveBackend{url: be.URL, hc: hc}, db)
	if err != nil {
		return err
	}
	governor.OnChange = catalog.Invalidate // admin API changes serve at once
	governor.OnPinChange = guard.Invalidate

	metrics := server.NewMetrics()
	registerModelMetrics(metrics.Registry, guard)
	metrics.WatchGPU(monitor)
	metrics.WatchQueue(queue.Stats)
	registerMetrics(metrics.Registry, be, tr, client)
	registerGateMetrics(metrics.Registry, gate)
	conns.register(metrics.Registry, ln.Open)
	registerQuotaMetrics(metrics.Registry, limiter)
	registerPreflightMetrics(metrics.Registry, pre.Latest)
	if cfg.Server.MetricsListen != "" {
		stop, err := serveMetrics(cfg.Server.MetricsListen, metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	safety, err := startSafety(ctx, &cfg, log.With("component", "safety"))
	if err != nil {
		return err
	}
	guardModel, err := startGuard(ctx, &cfg, client, log.With("component", "safety"))
	if err != nil {
		return err
	}
	srv, err := server.New(client, server.Config{
		MaxBodyBytes:      cfg.Server.MaxBodyBytes,
		MaxOutputTokens:   cfg.Server.MaxOutputTokens,
		RequestTimeout:    cfg.Server.RequestTimeout,
		KeepAliveInterval: cfg.Server.KeepAliveInterval,
		WriteTimeout:      cfg.Server.WriteTimeout,
		TrustedProxies:    cfg.Server.TrustedProxies,
		Ready:             be.Ready,
		Models:            catalog,
		ModelGuard:        guard,
		ModelAdmin:        governor,
		Keys:              cache,
		Quota:             limiter,
		DefaultLimits:     cfg.Limits.keys(),
		RequireUser:       cfg.Keys.RequireUser,
		UserHeader:        cfg.Keys.UserHeader,
		UserEmailHeader:   cfg.Keys.UserEmailHeader,
		UserNameHeader:    cfg.Keys.UserNameHeader,
		GPU:               monitor,
		Metrics:           metrics,
		Queue:             queue,
		Audit:             tr.Writer(),
		AuditFailOpen:     cfg.Audit.FailOpen,
		AuditText:         cfg.Audit.StoreText,
		Filter:            safety,
		Guard:             guardModel,
		OnAuthRefused:     tr.Refused,
		Admin:             keys.Admin{Manager: &keys.Manager{DB: db}, Cache: cache},
		Usage:             limiter,
		Preflight:         pre.Latest,
		Probes:            probe.Store{DB: db},
		HSTS:              tlsConf != nil,
		Logger:            log,

		MaxInflightBodyBytesPerIP: cfg.Server.MaxInflightBodyBytesPerIP,
		AdminAllow:                adminAllow,
		MaxRPS:                    cfg.Server.MaxRPS,
		AuthFailLimit:             cfg.Server.AuthFailLimit,
		AuthBan:                   cfg.Server.AuthBan,
		CORSOrigins:               cfg.Server.CORSOrigins,
		OnRequestRefused:          tr.RequestRefused,
	})
	if err != nil {
		return err
	}
	if err := writeServerURL(cfg.DataDir, listenURL(ln.Addr(), tlsConf != nil)); err != nil {
		return err
	}
	var labeler *probe.GuardLabeler
	if guardModel != nil {
		labeler = &probe.GuardLabeler{Config: guardModel, Backend: client}
	}
	probes, err := startProbes(ctx, cfg, db, srv.Handler(), labeler, queue, tr, log.With("component", "probe"))
	if err != nil {
		return err
	}
	defer probes.Close()
	hs := newHTTPServer(ctx, cfg.Server, srv.Handler(), log)
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			hs.TLSConfig = tlsConf
			errc <- hs.ServeTLS(ln, "", "") // the certificate comes from tlsConf
			return
		}
		errc <- hs.Serve(ln)
	}()
	log.Info("serving", "addr", ln.Addr().String(), "tls", tlsConf != nil, "version", Version)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests in flight", "timeout", cfg.Server.DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainTimeout)
	defer cancel()
	if err := hs.Shutdown(drainCtx); err != nil {
		// Requests still running end with an error (an error event for a
		// stream) and their records; then the connections are closed.
		log.Warn("drain timed out; ending the requests in flight", "err", err)
		srv.CutRequests()
		endCtx, cancelEnd := context.WithTimeout(context.Background(), cutGrace)
		defer cancelEnd()
		if hs.Shutdown(endCtx) != nil {
			_ = hs.Close()
		}
	}
	<-errc
	return nil
}

// guardListener guards the API's listener: the client allowlist and
// connection ceilings at accept (a refusal counted and passed to
// refused, for the aggregated audit record), and the header-timeout count.
func guardListener(tcp net.Listener, sc ServerConfig, allow []netip.Prefix, m connMetrics, refused func(ip string)) *listener.Listener {
	return listener.Wrap(tcp, listener.Config{
		Allow:         allow,
		MaxConns:      sc.MaxConnections,
		MaxConnsPerIP: sc.MaxConnectionsPerIP,
		OnRefused: func(ip netip.Addr, reason string) {
			m.refused.WithLabelValues(reason).Inc()
			refused(ip.String()) // one aggregated audit record per address and minute
		},
		OnHeaderTimeout: func(netip.Addr) { m.headerTimeouts.Inc() },
	})
}

// newHTTPServer is the API's http.Server over a guardListener: its
// timeouts and header cap, and the hooks the listener needs to tell a
// header timeout from an idle keep-alive close.
func newHTTPServer(ctx context.Context, sc ServerConfig, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           listener.Track(h),
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:       listener.ConnContext,
	}
}

// cutGrace is how long requests cut at the drain timeout have to send
// their error events and write their records before connections close.
const cutGrace = 5 * time.Second
