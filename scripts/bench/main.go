// Command bench measures what Warden costs on top of the Ollama it fronts.
//
// It sends the same OpenAI chat request, byte for byte, through Warden's
// /v1/chat/completions and directly to the /v1/chat/completions of
// Warden's own Ollama child, so the only difference between the two sides
// is the extra hop: Warden's HTTP server, middleware, request conversion
// and response re-encoding.
//
// For every cell (streaming or not × number of concurrent clients) it runs
// both sides in A/B repetitions, alternating which goes first in each
// repetition (AB, BA, AB, ...) so that drift in the machine's state (other
// load, thermal, caches) falls on both sides alike. Each side of a
// repetition runs closed-loop clients for -duration (or -requests) and
// yields requests/s and p50/p99 latency, the latency of a request being the
// time from sending it to reading its last byte (for streams: to EOF, after
// "data: [DONE]"). Per cell it prints, for each side, the median across
// repetitions, then the paired per-repetition comparisons: throughput ratio
// warden/direct and added p50 latency (warden p50 − direct p50), each as
// the median and the min–max spread across repetitions. The goal (issue
// 17): a ratio of at least 0.95 in every cell, an added p50 of at most
// 1.0 ms at one client, and at least stock Ollama's throughput at every
// client count; a one-line verdict per cell closes the output.
//
// By default it starts `warden serve` itself on a free loopback port with a
// temporary data dir, waits for /readyz, reads the child's URL from
// backend.url, and stops Warden with SIGTERM on exit, Ctrl-C or error:
//
//	go run ./scripts/bench -warden $PWD/bin/warden -ollama $PWD/bin/ollama
//
// Two more measurements follow when bench starts Warden itself:
//
//   - stock: a second `ollama serve` with Ollama's default of one slot
//     (OLLAMA_NUM_PARALLEL=1) on a free loopback port, over the same models
//     dir, against Warden at the same client counts (non-streamed, A/B as
//     above): what keeping the backend's batch full is worth.
//   - fairness: two keys made through the admin API; one light client is
//     measured alone and next to -fair-clients heavy clients of the other
//     key, on Warden and, for contrast, on its Ollama directly (first come,
//     first served). The light client's p95 under load over its p95 alone
//     should stay at or below 1.5.
//   - audit in memory: a second warden with its data dir on /dev/shm (a
//     tmpfs: the audit trail is written, no fsync reaches a disk), one
//     client, A/B against its own backend: the added p50 next to the main
//     one-client cells is what the durable audit trail costs.
//
// With -url and -direct it measures an already running Warden and backend
// instead. Every failed request (transport error, non-200 status, stream
// without [DONE], unreadable body) is counted, reported, and makes the
// program exit 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Targets the numbers are judged against (issue 17's goal).
const (
	targetRatio    = 0.95 // warden req/s ≥ targetRatio × direct req/s, every cell
	targetAddedP50 = 1.0  // warden p50 − direct p50 ≤ targetAddedP50 ms, at one client
	targetStock    = 1.0  // warden req/s ≥ targetStock × stock Ollama's, every client count
)

func main() {
	if backend := os.Getenv(bareProxyEnv); backend != "" {
		if err := serveBareProxy(backend, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench: bare proxy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	wardenBin    string
	ollamaBin    string
	url          string
	direct       string
	key          string
	model        string
	concurrency  []int
	reps         int
	duration     time.Duration
	requests     int
	maxTokens    int
	streams      []bool
	warmup       time.Duration
	timeout      time.Duration
	startTimeout time.Duration
	parallel     int
	prefetch     int
	json         bool
	stock        bool
	fairness     bool
	fairClients  int
	auditMemory  bool
	bareProxy    bool
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	var o options
	var conc, stream string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.wardenBin, "warden", "", "warden binary to start (ignored with -url)")
	fs.StringVar(&o.ollamaBin, "ollama", "", "ollama binary, passed to warden as runtime.ollama_bin (made absolute)")
	fs.StringVar(&o.url, "url", "", "base URL of an already running Warden instead of starting one (needs -direct)")
	fs.StringVar(&o.direct, "direct", "", "with -url: base URL of the Ollama that Warden fronts")
	fs.StringVar(&o.key, "key", "", "API key sent to Warden only, as Authorization: Bearer")
	fs.StringVar(&o.model, "model", "warden-demo", "model to ask")
	fs.StringVar(&conc, "concurrency", "1,8,32", "comma-separated numbers of concurrent clients")
	fs.IntVar(&o.reps, "reps", 5, "A/B repetitions per cell, order alternating")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "time each side runs per repetition")
	fs.IntVar(&o.requests, "requests", 0, "requests each side sends per repetition, instead of -duration")
	fs.IntVar(&o.maxTokens, "max-tokens", 8, "max_tokens of every request")
	fs.StringVar(&stream, "stream", "both", "streaming requests: both, true or false")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up time per side before each cell (0 for none)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "timeout of one request")
	fs.DurationVar(&o.startTimeout, "start-timeout", 3*time.Minute, "how long to wait for the started warden's /readyz")
	fs.IntVar(&o.parallel, "parallel", 0, "runtime.parallel for the started warden (0: its default)")
	fs.IntVar(&o.prefetch, "prefetch", -1, "runtime.prefetch for the started warden (-1: its default)")
	fs.BoolVar(&o.json, "json", false, "also print the results as JSON")
	fs.BoolVar(&o.stock, "stock", true, "also compare with a stock Ollama with one slot (needs -ollama; not with -url)")
	fs.BoolVar(&o.fairness, "fairness", true, "also measure fairness between a heavy and a light key (not with -url)")
	fs.IntVar(&o.fairClients, "fair-clients", 32, "concurrent clients of the heavy key in the fairness run")
	fs.BoolVar(&o.bareProxy, "bare-proxy", true, "also measure a bare reverse proxy (net/http/httputil) in front of the same backend, for reference")
	fs.BoolVar(&o.auditMemory, "audit-memory", true, "also measure one client on a warden with its audit database in memory (/dev/shm; not with -url)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	for f := range strings.SplitSeq(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-concurrency: want positive integers, got %q", conc)
		}
		o.concurrency = append(o.concurrency, n)
	}
	switch stream {
	case "both":
		o.streams = []bool{false, true}
	case "true", "false":
		o.streams = []bool{stream == "true"}
	default:
		return nil, fmt.Errorf("-stream: want both, true or false, got %q", stream)
	}
	switch {
	case o.reps < 1:
		return nil, errors.New("-reps must be at least 1")
	case o.requests < 0:
		return nil, errors.New("-requests must not be negative")
	case o.requests == 0 && o.duration <= 0:
		return nil, errors.New("-duration must be positive")
	case o.maxTokens < 1:
		return nil, errors.New("-max-tokens must be at least 1")
	case o.warmup < 0:
		return nil, errors.New("-warmup must not be negative")
	}
	if o.url != "" {
		if o.direct == "" {
			return nil, errors.New("-url needs -direct, the URL of the backend it fronts")
		}
		o.url = strings.TrimRight(o.url, "/")
		o.direct = strings.TrimRight(o.direct, "/")
		return &o, nil
	}
	if o.direct != "" {
		return nil, errors.New("-direct goes with -url; without -url the direct side is the started warden's own backend")
	}
	if o.wardenBin == "" {
		return nil, errors.New("-warden (a warden binary) or -url (a running warden) is required")
	}
	var err error
	if o.wardenBin, err = executable(o.wardenBin); err != nil {
		return nil, fmt.Errorf("-warden: %w", err)
	}
	if o.ollamaBin != "" {
		if o.ollamaBin, err = executable(o.ollamaBin); err != nil {
			return nil, fmt.Errorf("-ollama: %w", err)
		}
	}
	return &o, nil
}

// executable makes path absolute and checks it is an executable file.
func executable(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", abs)
	}
	return abs, nil
}

// repResult is one A/B repetition of a cell.
type repResult struct {
	First  string     `json:"first"` // which side ran first
	Warden sideResult `json:"warden"`
	Direct sideResult `json:"direct"`
}

// cellResult is every repetition of one (stream, clients) cell, and its
// summary.
type cellResult struct {
	// Gateway names the side measured against direct when it is not
	// Warden (the bare proxy).
	Gateway string      `json:"gateway,omitempty"`
	Stream  bool        `json:"stream"`
	Clients int         `json:"clients"`
	Reps    []repResult `json:"reps"`
	Summary summary     `json:"summary"`
}

func (c *cellResult) gateway() string {
	if c.Gateway != "" {
		return c.Gateway
	}
	return "warden"
}

// sideSummary is the median of one side across repetitions.
type sideSummary struct {
	ReqPerS  float64 `json:"req_per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	Requests int     `json:"requests"`                     // all repetitions
	Errors   int     `json:"errors"`                       // all repetitions
	NewConns int     `json:"new_conns"`                    // all repetitions
	BoxCPUMs float64 `json:"box_cpu_ms_per_req,omitempty"` // median
	OwnCPUMs float64 `json:"own_cpu_ms_per_req,omitempty"` // median
}

// spread is a median with the min and max across repetitions.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) spread {
	return spread{Median: median(xs), Min: slices.Min(xs), Max: slices.Max(xs)}
}

type summary struct {
	Warden      sideSummary `json:"warden"`
	Direct      sideSummary `json:"direct"`
	Ratio       spread      `json:"throughput_ratio"` // warden/direct, per repetition
	AddedP50Ms  spread      `json:"added_p50_ms"`     // warden − direct, per repetition
	RatioOK     bool        `json:"ratio_ok"`
	AddedP50OK  bool        `json:"added_p50_ok"`
	errorDetail []string
}

// summarize takes the medians of c's repetitions and judges its ratio
// against target (targetRatio against direct Ollama, targetStock against
// stock Ollama).
func summarize(c *cellResult, target float64) {
	var ratio, added []float64
	var w, d [5][]float64
	s := &c.Summary
	for _, r := range c.Reps {
		if r.Direct.ReqPerS > 0 {
			ratio = append(ratio, r.Warden.ReqPerS/r.Direct.ReqPerS)
		}
		added = append(added, r.Warden.P50Ms-r.Direct.P50Ms)
		for i, v := range []float64{r.Warden.ReqPerS, r.Warden.P50Ms, r.Warden.P99Ms, r.Warden.BoxCPUMs, r.Warden.OwnCPUMs} {
			w[i] = append(w[i], v)
		}
		for i, v := range []float64{r.Direct.ReqPerS, r.Direct.P50Ms, r.Direct.P99Ms, r.Direct.BoxCPUMs, r.Direct.OwnCPUMs} {
			d[i] = append(d[i], v)
		}
		s.Warden.Requests += r.Warden.Requests
		s.Warden.Errors += r.Warden.errorCount()
		s.Direct.Requests += r.Direct.Requests
		s.Direct.Errors += r.Direct.errorCount()
		s.Warden.NewConns += r.Warden.NewConns
		s.Direct.NewConns += r.Direct.NewConns
	}
	s.Warden.ReqPerS, s.Warden.P50Ms, s.Warden.P99Ms = median(w[0]), median(w[1]), median(w[2])
	s.Direct.ReqPerS, s.Direct.P50Ms, s.Direct.P99Ms = median(d[0]), median(d[1]), median(d[2])
	s.Warden.BoxCPUMs, s.Warden.OwnCPUMs = median(w[3]), median(w[4])
	s.Direct.BoxCPUMs, s.Direct.OwnCPUMs = median(d[3]), median(d[4])
	if len(ratio) > 0 {
		s.Ratio = spreadOf(ratio)
	}
	s.AddedP50Ms = spreadOf(added)
	s.RatioOK = s.Ratio.Median >= target
	s.AddedP50OK = c.Clients != 1 || s.AddedP50Ms.Median <= targetAddedP50 // judged at one client
	for i, r := range c.Reps {
		for _, side := range []struct {
			name string
			res  *sideResult
		}{{c.gateway(), &r.Warden}, {"direct", &r.Direct}} {
			for _, k := range slices.Sorted(maps.Keys(side.res.Errors)) {
				s.errorDetail = append(s.errorDetail, fmt.Sprintf("rep %d %s: %d × %s (e.g. %s)",
					i+1, side.name, side.res.Errors[k], k, side.res.errSamples[k]))
			}
		}
	}
}

// report is everything -json prints.
type report struct {
	Started     time.Time    `json:"started"`
	GOOS        string       `json:"goos"`
	GOARCH      string       `json:"goarch"`
	CPUs        int          `json:"cpus"`
	LoadAvg     string       `json:"loadavg,omitempty"`
	LoadAvgEnd  string       `json:"loadavg_end,omitempty"`
	Warden      string       `json:"warden_url"`
	Direct      string       `json:"direct_url"`
	Model       string       `json:"model"`
	MaxTokens   int          `json:"max_tokens"`
	Reps        int          `json:"reps"`
	DurationS   float64      `json:"duration_s,omitempty"`
	Requests    int          `json:"requests,omitempty"`
	WarmupS     float64      `json:"warmup_s"`
	TargetRatio float64      `json:"target_ratio"`
	TargetAdded float64      `json:"target_added_p50_ms"`
	Cells       []cellResult `json:"cells"`
	// StockCells compare Warden with a stock Ollama with one slot.
	StockCells []cellResult     `json:"stock_cells,omitempty"`
	Fairness   []fairnessResult `json:"fairness,omitempty"`
	// AuditMemoryCells are one client on a warden whose audit database
	// is in memory.
	AuditMemoryCells []cellResult `json:"audit_memory_cells,omitempty"`
	// BareProxyCells hold Go's reverse proxy against the same backend.
	BareProxyCells []cellResult `json:"bare_proxy_cells,omitempty"`
	Verdicts       []string     `json:"verdicts,omitempty"`
	Interrupted    bool         `json:"interrupted,omitempty"`
}

func run(parent context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	wardenURL, directURL := o.url, o.direct
	var tail func() string
	var modelsDir string
	wardenPid := 0
	if o.url == "" {
		fmt.Fprintf(stderr, "starting %s serve ...\n", o.wardenBin)
		p, err := startWarden(ctx, o.wardenBin, o.ollamaBin, o.parallel, wardenSetup{prefetch: o.prefetch}, o.startTimeout, func(err error) {
			if err == nil {
				err = errors.New("exit status 0")
			}
			cancel(fmt.Errorf("warden exited during the run: %w", err))
		})
		if err != nil {
			return err
		}
		defer func() {
			fmt.Fprintln(stderr, "stopping warden ...")
			if cerr := p.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		wardenURL, directURL = p.baseURL, p.backendURL
		if o.key == "" {
			o.key = p.adminKey // every request goes through auth and quota, as in production
		}
		tail = func() string { return p.logTail(20) }
		wardenPid = p.cmd.Process.Pid
		modelsDir = filepath.Join(p.dataDir, "models")
	} else {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		err := waitReady(rctx, wardenURL, nil)
		rcancel()
		if err != nil {
			return err
		}
	}
	// fail wraps an error with Warden's log when Warden is what ended the run.
	fail := func(err error) error {
		if parent.Err() != nil {
			return errors.New("interrupted")
		}
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && tail != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w\n%s", cause, tail())
			}
			return fmt.Errorf("%w: %w\n%s", err, cause, tail())
		}
		return err
	}

	warden := newTarget("warden", wardenURL, o.key, o.timeout)
	warden.pid = wardenPid
	direct := newTarget("direct", directURL, "", o.timeout)
	defer warden.close()
	defer direct.close()

	if err := sanityCheck(ctx, stderr, warden, direct, chatBody(o.model, o.maxTokens, false)); err != nil {
		return fail(err)
	}

	rep := &report{
		Started:     time.Now().UTC(),
		GOOS:        runtime.GOOS,
		GOARCH:      runtime.GOARCH,
		CPUs:        runtime.NumCPU(),
		LoadAvg:     loadAvg(),
		Warden:      wardenURL,
		Direct:      directURL,
		Model:       o.model,
		MaxTokens:   o.maxTokens,
		Reps:        o.reps,
		WarmupS:     o.warmup.Seconds(),
		TargetRatio: targetRatio,
		TargetAdded: targetAddedP50,
	}
	if o.requests > 0 {
		rep.Requests = o.requests
	} else {
		rep.DurationS = o.duration.Seconds()
	}
	printHeader(stdout, rep)

	failed := 0
	for _, stream := range o.streams {
		var cells []cellResult
		err := func() error {
			for _, clients := range o.concurrency {
				c, err := runCell(ctx, stderr, o, warden, direct, stream, clients)
				if err != nil {
					return err
				}
				summarize(&c, targetRatio)
				failed += c.Summary.Warden.Errors + c.Summary.Direct.Errors
				cells = append(cells, c)
				rep.Cells = append(rep.Cells, c)
			}
			return nil
		}()
		printTable(stdout, "warden", "direct", stream, cells)
		if err != nil {
			rep.Interrupted = true
			if o.json {
				printJSON(stdout, rep)
			}
			return fail(err)
		}
	}
	if o.stock && modelsDir != "" {
		if err := runStock(ctx, stdout, stderr, o, warden, modelsDir, rep, &failed); err != nil {
			return fail(err)
		}
	}
	if o.fairness && o.url == "" {
		if err := fairness(ctx, stdout, stderr, o, wardenURL, directURL, rep); err != nil {
			return fail(err)
		}
	}
	if o.auditMemory && modelsDir != "" {
		if err := auditMemory(ctx, stdout, stderr, o, modelsDir, rep, &failed); err != nil {
			return fail(err)
		}
	}
	if o.bareProxy {
		if err := bareProxy(ctx, stdout, stderr, o, directURL, rep, &failed); err != nil {
			return fail(err)
		}
	}
	rep.Verdicts = verdicts(rep)
	fmt.Fprintln(stdout, "\nverdict (goal: ≥ 0.95× direct req/s in every cell, added p50 ≤ 1.0ms at one client, ≥ stock Ollama's req/s)")
	for _, v := range rep.Verdicts {
		fmt.Fprintln(stdout, v)
	}
	if rep.LoadAvgEnd = loadAvg(); rep.LoadAvgEnd != "" {
		fmt.Fprintf(stdout, "\nloadavg at end %s\n", rep.LoadAvgEnd)
	}
	if o.json {
		printJSON(stdout, rep)
	}
	if failed > 0 {
		return fmt.Errorf("%d requests failed; see the errors above", failed)
	}
	return nil
}

// sanityCheck sends one non-streamed request to each side: both must
// answer, and (temperature 0, fixed seed) should answer alike.
func sanityCheck(ctx context.Context, stderr io.Writer, warden, direct *target, body []byte) error {
	w, err := warden.do(ctx, body, false)
	if err != nil {
		return fmt.Errorf("first request to warden: %w", err)
	}
	d, err := direct.do(ctx, body, false)
	if err != nil {
		return fmt.Errorf("first request to direct: %w", err)
	}
	if w == d {
		fmt.Fprintf(stderr, "sanity: warden and direct answer alike: %q\n", w)
	} else {
		fmt.Fprintf(stderr, "sanity: WARNING: answers differ: warden %q, direct %q\n", w, d)
	}
	return nil
}

// runCell warms both sides up at this concurrency, then runs the
// repetitions, alternating which side goes first.
func runCell(ctx context.Context, stderr io.Writer, o *options, warden, direct *target, stream bool, clients int) (cellResult, error) {
	body := chatBody(o.model, o.maxTokens, stream)
	c := cellResult{Stream: stream, Clients: clients}
	label := fmt.Sprintf("stream=%-5t clients=%-3d", stream, clients)
	if o.warmup > 0 {
		for _, t := range []*target{warden, direct} {
			res, err := t.run(ctx, body, stream, load{clients: clients, duration: o.warmup})
			if err != nil {
				return c, err
			}
			if n := res.errorCount(); n > 0 {
				fmt.Fprintf(stderr, "%s warm-up: %s: %d failed requests (not counted)\n", label, t.name, n)
			}
		}
	}
	l := load{clients: clients, duration: o.duration, requests: o.requests}
	for i := range o.reps {
		order := []*target{warden, direct}
		if i%2 == 1 {
			order = []*target{direct, warden}
		}
		r := repResult{First: order[0].name}
		for _, t := range order {
			before := sampleCPU(t.pid)
			res, err := t.run(ctx, body, stream, l)
			if err != nil {
				return c, err
			}
			res.cpuPerRequest(before, sampleCPU(t.pid), t.pid)
			if t == warden {
				r.Warden = res
			} else {
				r.Direct = res
			}
		}
		c.Reps = append(c.Reps, r)
		fmt.Fprintf(stderr, "%s rep %d/%d: %s %7.2f req/s p50 %8.2fms | %s %7.2f req/s p50 %8.2fms%s\n",
			label, i+1, o.reps, warden.name, r.Warden.ReqPerS, r.Warden.P50Ms, direct.name, r.Direct.ReqPerS, r.Direct.P50Ms,
			errNote(r.Warden.errorCount()+r.Direct.errorCount()))
	}
	return c, nil
}

func errNote(n int, first ...string) string {
	if n == 0 {
		return ""
	}
	if len(first) > 0 && first[0] != "" {
		return fmt.Sprintf("  (%d failed; first: %s)", n, first[0])
	}
	return fmt.Sprintf("  (%d failed)", n)
}
