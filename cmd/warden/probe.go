package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/probe"
	"github.com/warden-llm/warden/safety/store"
)

// probeKeyFile, in the data dir, holds the probe key: the key whose
// requests are marked as probes in the audit trail.
const probeKeyFile = "probe.key"

// serverURLFile, in the data dir, holds the URL the running server
// listens on, so `warden probe run` reaches the same pipeline.
const serverURLFile = "server.url"

// probeKeyName names the probe key in `warden keys list`.
const probeKeyName = "probe"

// probeKeyGrace is how long the probe key's previous secret keeps
// working after ensureProbeKey rotates it (a scheduled run in flight).
const probeKeyGrace = time.Hour

// ensureProbeKey returns the probe key's id and token: the one in
// probe.key while it is a live probe key, rotated once it is older than
// maxAge (so keys.rotation never fails on it), else a new one written
// there. fresh: the token is new, and a running server learns of it
// within keys.poll_interval.
func ensureProbeKey(ctx context.Context, db *store.DB, dataDir, actor string, maxAge time.Duration) (id, token string, fresh bool, err error) {
	m := &keys.Manager{DB: db}
	path := filepath.Join(dataDir, probeKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		token = strings.TrimSpace(string(b))
		if id, _, perr := keys.Parse(token); perr == nil {
			if k, gerr := m.Get(ctx, id); gerr == nil && k.Probe && k.Revoked == nil && (k.Expires == nil || time.Now().Before(*k.Expires)) {
				born := k.Created
				if k.Rotated != nil {
					born = *k.Rotated
				}
				if maxAge <= 0 || time.Since(born) < maxAge {
					return id, token, false, nil
				}
				_, token, err := m.Rotate(ctx, actor, id, probeKeyGrace)
				if err != nil {
					return "", "", false, fmt.Errorf("rotate probe key: %w", err)
				}
				if err := writePrivate(path, token+"\n"); err != nil {
					return "", "", false, err
				}
				return id, token, true, nil
			}
		}
	}
	k, token, err := m.Create(ctx, actor, keys.Spec{Name: probeKeyName, Scopes: []keys.Scope{keys.ScopeChat, keys.ScopeModels}, Probe: true})
	if err != nil {
		return "", "", false, fmt.Errorf("create probe key: %w", err)
	}
	if err := writePrivate(path, token+"\n"); err != nil {
		return "", "", false, err
	}
	return k.ID, token, true, nil
}

// probeKeyMaxAge is half of keys.rotation_max_age, or 30 days without one.
func probeKeyMaxAge(cfg Config) time.Duration {
	if cfg.Keys.RotationMaxAge > 0 {
		return cfg.Keys.RotationMaxAge / 2
	}
	return 30 * 24 * time.Hour
}

func writeServerURL(dataDir, u string) error {
	return writePrivate(filepath.Join(dataDir, serverURLFile), u+"\n")
}

// serverClient finds the running server (server.url in the data dir) and
// the HTTP client that reaches it: for TLS, one that accepts exactly the
// certificate in server.tls.cert_file.
func serverClient(cfg Config) (string, *http.Client, error) {
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, serverURLFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, fmt.Errorf("no server found in %s: is `warden serve` running with this data dir?", cfg.DataDir)
	}
	if err != nil {
		return "", nil, err
	}
	base := strings.TrimSpace(string(b))
	if !strings.HasPrefix(base, "https://") {
		return base, &http.Client{}, nil
	}
	pemBytes, err := os.ReadFile(cfg.Server.TLS.CertFile)
	if err != nil {
		return "", nil, fmt.Errorf("read the server's certificate: %w", err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return "", nil, fmt.Errorf("%s holds no PEM certificate", cfg.Server.TLS.CertFile)
	}
	want := blk.Bytes
	tc := &tls.Config{
		// The server is this data dir's own: pin its certificate rather
		// than its name (it listens on an address, not a host name).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || string(raw[0]) != string(want) {
				return errors.New("the server's certificate is not the one in server.tls.cert_file")
			}
			return nil
		},
	}
	return base, &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}, nil
}

// apiChat runs chats on Ollama's api.Client for the guard (its callback
// is a named func type).
type apiChat struct{ c *api.Client }

func (a apiChat) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	return a.c.Chat(ctx, req, fn)
}

// probeSetup is what a run needs, for the CLI and for serve's schedule.
type probeSetup struct {
	db     *store.DB
	cfg    ProbeConfig
	chat   *probe.HTTPChatter
	keyID  string
	fresh  bool // the key was just made: the server may not know it yet
	stderr io.Writer
	bar    func(total int) func(done, total int)
	// guard, if set, labels each answer with the [safety.guard] model.
	guard *probe.GuardLabeler
}

// runProbes runs suite on model (""= the configured one, else the first
// listed), stores the run and returns its report.
func (ps *probeSetup) run(ctx context.Context, suiteName, model string, seed int64, trigger string) (probe.Report, error) {
	suite, err := probe.Load(suiteName)
	for _, s := range suite.Skipped {
		fmt.Fprintf(ps.stderr, "warden: skipped %s\n", s.Error())
	}
	if err != nil {
		return probe.Report{}, err
	}
	ids, err := ps.models(ctx)
	if err != nil {
		return probe.Report{}, err
	}
	if model == "" {
		model = ps.cfg.Model
	}
	if model == "" {
		if len(ids) == 0 {
			return probe.Report{}, errors.New("the probe key sees no model to probe")
		}
		model = ids[0]
	}
	canon := func(n string) string { c, _ := models.Canonical(n); return c }
	if !slices.ContainsFunc(ids, func(id string) bool { return canon(id) == canon(model) }) {
		return probe.Report{}, fmt.Errorf("unknown model %q (the server lists: %s)", model, strings.Join(ids, ", "))
	}
	rn := &probe.Runner{Chat: ps.chat, Timeout: ps.cfg.Timeout}
	if ps.guard != nil {
		rn.Guard, rn.GuardModel = ps.guard, ps.guard.Config.Model
	}
	if ps.bar != nil {
		rn.OnProgress = ps.bar(len(suite.Probes))
	}
	start := time.Now()
	run, err := rn.Run(ctx, suite, model, seed)
	if err != nil {
		return probe.Report{}, err
	}
	run.KeyID, run.Trigger = ps.keyID, trigger
	run.ModelDigest = auditDigest(ctx, ps.db, ps.keyID, start)
	if err := probe.Save(ctx, ps.db, &run); err != nil {
		return probe.Report{}, err
	}
	return buildReport(ctx, ps.db, run.ID)
}

// models lists the models the probe key sees. A key just made is unknown
// to the running server until its next poll: 401s are retried for a few
// poll intervals.
func (ps *probeSetup) models(ctx context.Context) ([]string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, err := ps.chat.Models(ctx)
		if err == nil || !ps.fresh || !strings.Contains(err.Error(), "status 401") || time.Now().After(deadline) {
			if err == nil {
				ps.fresh = false
			}
			return ids, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// auditDigest is the model digest the audit trail recorded for the probe
// key's completions since start: what actually answered.
func auditDigest(ctx context.Context, db *store.DB, keyID string, since time.Time) string {
	recs, err := audit.Query(ctx, db, audit.Filter{KeyID: keyID, Since: since.Add(-time.Second)})
	if err != nil {
		return ""
	}
	for _, r := range recs {
		if r.Kind == audit.KindCompletion && r.ModelDigest != "" {
			return r.ModelDigest
		}
	}
	return ""
}

// buildReport reads run id (0: the newest) and the previous run of its
// model.
func buildReport(ctx context.Context, db *store.DB, id int64) (probe.Report, error) {
	cur, err := probe.Get(ctx, db, id, false)
	if err != nil {
		return probe.Report{}, err
	}
	rep := probe.Report{Run: cur}
	var prevResults []probe.CategoryResult
	if prev, err := probe.Previous(ctx, db, cur); err == nil {
		rep.Previous = &prev
		prevResults = prev.Results
	} else if !errors.Is(err, probe.ErrNoRun) {
		return rep, err
	}
	rep.Changes = probe.Compare(cur.Results, prevResults)
	return rep, nil
}

func writeReport(w io.Writer, rep probe.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}

// terminalBar draws a progress bar on stderr when it is a terminal.
func terminalBar(w io.Writer, what string) func(total int) func(done, total int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(total int) func(done, total int) {
		bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		return func(done, _ int) { _ = bar.Set(done) }
	}
}

func newProbeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Run probe suites (bias, over-refusal, harmful, injection, leakage) and report them",
		Long: `Probe sends a suite of test prompts through the running server's whole
request path (keys, filters, scheduler, audit) with a dedicated probe key
whose audit records are marked {"probe":true}, scores the answers without a
judge model (refusal phrases and the filters' verdicts, multiple-choice
parsing, counterfactual pair differences, BBQ's bias scores, each rate with
its Wilson 95% interval) and stores the run and every answer.

Built-in suites: ` + strings.Join(probe.Builtins(), ", ") + `. See docs/probes.md.`,
	}
	cmd.AddCommand(newProbeRunCmd(g), newProbeReportCmd(g), newProbeListCmd(g))
	return cmd
}

func newProbeRunCmd(g *globals) *cobra.Command {
	var suite, model string
	var seed int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a suite against a model through the running server and store the run",
		Long: `Run sends every probe of the suite (--suite: a built-in name or a JSONL file,
probe lines or the published BBQ format) to the model (--model, default
probe.model, else the first model listed) through the running server, at
temperature 0 with --seed, and stores the run, every answer, the model's
digest, the suite's SHA-256 and the seed. With a guard model configured
([safety.guard]) it also labels each answer (safe, unsafe, unreadable,
failed) beside the phrase-based verdict. Malformed suite lines are reported
with file:line and skipped. A probe that errors or times out is recorded as
an error, never as a pass. It prints the report (--json for cron).`,
		Args: cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, cfg Config) error {
			base, hc, err := serverClient(cfg)
			if err != nil {
				return err
			}
			id, token, fresh, err := ensureProbeKey(cmd.Context(), db, cfg.DataDir, osActor(), probeKeyMaxAge(cfg))
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("seed") {
				seed = cfg.Probe.Seed
			}
			if suite == "" {
				suite = cfg.Probe.Suite
			}
			ps := &probeSetup{db: db, cfg: cfg.Probe, keyID: id, fresh: fresh, stderr: g.stderr,
				chat: &probe.HTTPChatter{BaseURL: base, Key: token, HTTP: hc, MaxTokens: cfg.Probe.MaxTokens}}
			if !asJSON {
				ps.bar = terminalBar(g.stderr, "probing")
			}
			if gc, err := cfg.Safety.Guard.config(); err != nil {
				return err
			} else if gc != nil {
				client, _, closeNS, err := backendClient(cfg)
				if err != nil {
					return fmt.Errorf("safety.guard labels the answers: %w", err)
				}
				defer closeNS()
				ps.guard = &probe.GuardLabeler{Config: gc, Backend: apiChat{client}}
			}
			rep, err := ps.run(cmd.Context(), suite, model, seed, "cli")
			if err != nil {
				return err
			}
			return writeReport(g.stdout, rep, asJSON)
		}),
	}
	cmd.Flags().StringVar(&suite, "suite", "", "built-in suite name or JSONL file (default probe.suite)")
	cmd.Flags().StringVar(&model, "model", "", "model to probe (default probe.model, else the first listed)")
	cmd.Flags().Int64Var(&seed, "seed", 1, "seed sent with every probe (default probe.seed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON, no progress bar")
	return cmd
}

func newProbeReportCmd(g *globals) *cobra.Command {
	var id int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Show a stored run per category, with the change since the previous run of its model",
		Args:  cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, _ Config) error {
			rep, err := buildReport(cmd.Context(), db, id)
			if err != nil {
				return err
			}
			return writeReport(g.stdout, rep, asJSON)
		}),
	}
	cmd.Flags().Int64Var(&id, "run", 0, "run id (default the newest)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newProbeListCmd(g *globals) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List stored runs, newest first",
		Args:  cobra.NoArgs,
		RunE: g.withDB(func(cmd *cobra.Command, _ []string, db *store.DB, _ Config) error {
			runs, err := probe.List(cmd.Context(), db, limit)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(g.stdout).Encode(runs)
			}
			for _, r := range runs {
				fmt.Fprintf(g.stdout, "%d\t%s\t%s\t%s\t%d pass %d fail %d error\t%s\n", r.ID, r.Started.Format(time.RFC3339),
					r.Model, r.Suite, r.Passed, r.Failed, r.Errors, r.Trigger)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many runs")
	return cmd
}
