package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// targetFairness is the light key's p95 under load over its p95 alone.
const targetFairness = 1.5

// createKey makes a chat key through Warden's admin API with the admin key.
func createKey(ctx context.Context, base, adminKey, name string) (string, error) {
	body, _ := json.Marshal(map[string]any{"name": name, "scopes": []string{"chat"}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/keys", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("create key %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create key %s: %s %s", name, resp.Status, b)
	}
	var out struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Key == "" {
		return "", fmt.Errorf("create key %s: unexpected answer %s", name, b)
	}
	return out.Key, nil
}

// fairnessPhase is one measurement of the light client's latency.
type fairnessPhase struct {
	LightP95Ms   float64 `json:"light_p95_ms"`
	LightReqs    int     `json:"light_requests"`
	HeavyReqPerS float64 `json:"heavy_req_per_s,omitempty"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"` // what the first failed request got
}

// fairnessResult compares one light client alone with the same client next
// to heavy clients of another key, on one side (Warden, or Ollama direct).
type fairnessResult struct {
	Side         string          `json:"side"`
	HeavyClients int             `json:"heavy_clients"`
	Alone        []fairnessPhase `json:"alone"`
	Loaded       []fairnessPhase `json:"loaded"`
	AloneP95Ms   float64         `json:"alone_p95_ms"`  // median over reps
	LoadedP95Ms  float64         `json:"loaded_p95_ms"` // median over reps
	Ratio        float64         `json:"ratio"`
	OK           bool            `json:"ok"`
}

// runFairness alternates "light alone" and "light under heavy load"
// phases (order alternating per rep, as the A/B cells do).
func runFairness(ctx context.Context, stderr io.Writer, side string, light, heavy *target, body []byte, heavyClients, reps int, d time.Duration) (fairnessResult, error) {
	r := fairnessResult{Side: side, HeavyClients: heavyClients}
	for i := range reps {
		for j := range 2 {
			loaded := (i+j)%2 == 1
			ph, err := fairnessRun(ctx, light, heavy, body, heavyClients, loaded, d)
			if err != nil {
				return r, err
			}
			if loaded {
				r.Loaded = append(r.Loaded, ph)
			} else {
				r.Alone = append(r.Alone, ph)
			}
			fmt.Fprintf(stderr, "fairness %s rep %d/%d %-6s: light p95 %8.2fms (%d requests) heavy %7.2f req/s%s\n", side, i+1, reps,
				map[bool]string{true: "loaded", false: "alone"}[loaded], ph.LightP95Ms, ph.LightReqs, ph.HeavyReqPerS, errNote(ph.Errors, ph.FirstError))
		}
	}
	p95 := func(ps []fairnessPhase) float64 {
		var xs []float64
		for _, p := range ps {
			xs = append(xs, p.LightP95Ms)
		}
		return median(xs)
	}
	r.AloneP95Ms, r.LoadedP95Ms = p95(r.Alone), p95(r.Loaded)
	if r.AloneP95Ms > 0 {
		r.Ratio = r.LoadedP95Ms / r.AloneP95Ms
	}
	r.OK = r.Ratio > 0 && r.Ratio <= targetFairness
	return r, nil
}

// fairnessRun runs one light client for d, with heavyClients of the heavy
// key keeping the backend busy when loaded. The heavy clients start first
// and run until the light client is done.
func fairnessRun(ctx context.Context, light, heavy *target, body []byte, heavyClients int, loaded bool, d time.Duration) (fairnessPhase, error) {
	var ph fairnessPhase
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	heavyDone := 0
	start := time.Now()
	if loaded {
		for range heavyClients {
			wg.Go(func() {
				for hctx.Err() == nil {
					_, _, err := heavy.doTraced(hctx, body, false)
					if hctx.Err() != nil {
						return
					}
					mu.Lock()
					if err != nil {
						ph.Errors++
						if ph.FirstError == "" {
							ph.FirstError = "heavy: " + err.Error()
						}
					} else {
						heavyDone++
					}
					mu.Unlock()
				}
			})
		}
		select { // let the heavy key fill the queue first
		case <-ctx.Done():
		case <-time.After(d / 4):
		}
	}
	var lats []time.Duration
	end := time.Now().Add(d)
	for ctx.Err() == nil && time.Now().Before(end) {
		t0 := time.Now()
		_, _, err := light.doTraced(ctx, body, false)
		if err != nil {
			mu.Lock()
			ph.Errors++
			if ph.FirstError == "" {
				ph.FirstError = "light: " + err.Error()
			}
			mu.Unlock()
			continue
		}
		lats = append(lats, time.Since(t0))
	}
	stop()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return ph, err
	}
	slices.Sort(lats)
	ph.LightP95Ms = ms(percentile(lats, 0.95))
	ph.LightReqs = len(lats)
	if loaded {
		ph.HeavyReqPerS = float64(heavyDone) / time.Since(start).Seconds()
	}
	return ph, nil
}

func printFairness(w io.Writer, rs []fairnessResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfairness: one light client (its own key) alone vs next to %d heavy clients of another key; light p95, medians across reps\n", rs[0].HeavyClients)
	fmt.Fprintf(w, "%-26s │ %12s │ %12s │ %s\n", "side", "alone p95", "loaded p95", fmt.Sprintf("loaded/alone (target ≤ %.1f)", targetFairness))
	for _, r := range rs {
		fmt.Fprintf(w, "%-26s │ %12s │ %12s │ %.2f %s\n", r.Side, fmtMs(r.AloneP95Ms), fmtMs(r.LoadedP95Ms), r.Ratio, verdict(r.OK))
	}
}

// runStock starts a stock Ollama with one slot over Warden's models and
// compares Warden with it at every client count (non-streamed).
func runStock(ctx context.Context, stdout, stderr io.Writer, o *options, warden *target, modelsDir string, rep *report, failed *int) error {
	if o.ollamaBin == "" {
		fmt.Fprintln(stderr, "stock:", errNoOllamaBin)
		return nil
	}
	fmt.Fprintln(stderr, "starting a stock ollama serve with OLLAMA_NUM_PARALLEL=1 ...")
	s, err := startStock(ctx, o.ollamaBin, modelsDir, 4096, o.startTimeout)
	if err != nil {
		return err
	}
	defer s.Close()
	stock := newTarget("stock", s.baseURL, "", o.timeout)
	defer stock.close()
	if _, err := stock.do(ctx, chatBody(o.model, o.maxTokens, false), false); err != nil {
		return fmt.Errorf("first request to stock ollama: %w", err)
	}
	var cells []cellResult
	for _, clients := range o.concurrency {
		c, err := runCell(ctx, stderr, o, warden, stock, false, clients)
		if err != nil {
			return err
		}
		summarize(&c, targetStock)
		*failed += c.Summary.Warden.Errors + c.Summary.Direct.Errors
		cells = append(cells, c)
	}
	rep.StockCells = cells
	fmt.Fprintln(stdout, "\nwarden vs stock ollama (one slot, OLLAMA_NUM_PARALLEL=1); the target is a ratio of at least 1.00, added p50 is not judged")
	printTable(stdout, "warden", "stock", false, cells)
	return nil
}

// fairness makes a heavy and a light key and runs the fairness phases on
// Warden and, for contrast, on its Ollama directly.
func fairness(ctx context.Context, stdout, stderr io.Writer, o *options, wardenURL, directURL string, rep *report) error {
	heavyKey, err := createKey(ctx, wardenURL, o.key, "bench-heavy")
	if err != nil {
		return err
	}
	lightKey, err := createKey(ctx, wardenURL, o.key, "bench-light")
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // the admin API refreshed the cache; leave the poll a moment too
	body := chatBody(o.model, o.maxTokens, false)
	heavy := newTarget("heavy", wardenURL, heavyKey, o.timeout)
	light := newTarget("light", wardenURL, lightKey, o.timeout)
	dheavy := newTarget("direct-heavy", directURL, "", o.timeout)
	dlight := newTarget("direct-light", directURL, "", o.timeout)
	for _, t := range []*target{heavy, light, dheavy, dlight} {
		defer t.close()
	}
	for _, side := range []struct {
		name         string
		light, heavy *target
	}{{"warden (fair queue)", light, heavy}, {"ollama direct (FCFS)", dlight, dheavy}} {
		r, err := runFairness(ctx, stderr, side.name, side.light, side.heavy, body, o.fairClients, o.reps, o.duration)
		if err != nil {
			return err
		}
		rep.Fairness = append(rep.Fairness, r)
	}
	printFairness(stdout, rep.Fairness)
	return nil
}
