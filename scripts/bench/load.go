package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"github.com/warden-llm/warden/runtime/ollama"
)

// target is one side of the comparison: a base URL, its own tuned client,
// and the bearer key to send (Warden only).
type target struct {
	name    string
	pid     int // the gateway's process, when this program started it (for its CPU time)
	chatURL string
	key     string
	client  *http.Client
}

func newTarget(name, baseURL, key string, timeout time.Duration) *target {
	return &target{
		name:    name,
		chatURL: baseURL + "/v1/chat/completions",
		key:     key,
		client:  &http.Client{Transport: ollama.NewTransport(), Timeout: timeout},
	}
}

func (t *target) close() { t.client.CloseIdleConnections() }

// chatBody is the request both sides receive, byte for byte.
func chatBody(model string, maxTokens int, stream bool) []byte {
	b, err := json.Marshal(map[string]any{
		"model":       model,
		"messages":    []map[string]string{{"role": "user", "content": "Say something."}},
		"max_tokens":  maxTokens,
		"temperature": 0,
		"seed":        1,
		"stream":      stream,
	})
	if err != nil {
		panic(err) // static shape: cannot fail
	}
	return b
}

// Error kinds a request can end in. Every one is counted and reported.
const (
	errTransport  = "transport"
	errStatus     = "status"
	errNoDone     = "stream without [DONE]"
	errBadBody    = "bad body"
	errReadFailed = "read body"
)

// reqError is a failed request: its kind for counting, and a detail for
// the report.
type reqError struct {
	kind   string
	detail string
}

func (e *reqError) Error() string { return e.kind + ": " + e.detail }

// key groups errors in the report: statuses by code, others by kind.
func (e *reqError) key() string {
	if e.kind == errStatus {
		return e.detail[:min(len(e.detail), 3)]
	}
	return e.kind
}

var doneLine = []byte("data: [DONE]")

// do sends one chat request and reads the whole response. It returns the
// content of a non-streamed answer (for the sanity check).
func (t *target) do(ctx context.Context, body []byte, stream bool) (string, error) {
	content, _, err := t.doTraced(ctx, body, stream)
	return content, err
}

// doTraced is do, also saying whether the request had to open a new
// connection (a warm pool should never need one).
func (t *target) doTraced(ctx context.Context, body []byte, stream bool) (content string, newConn bool, err error) {
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { newConn = !info.Reused },
	})
	content, err = t.send(ctx, body, stream)
	return content, newConn, err
}

func (t *target) send(ctx context.Context, body []byte, stream bool) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.chatURL, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.key != "" {
		req.Header.Set("Authorization", "Bearer "+t.key)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return "", &reqError{kind: errTransport, detail: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return "", &reqError{kind: errStatus, detail: fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(snippet))}
	}
	if stream {
		return "", readStream(resp.Body)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", &reqError{kind: errReadFailed, detail: err.Error()}
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Choices) == 0 {
		return "", &reqError{kind: errBadBody, detail: string(b[:min(len(b), 300)])}
	}
	return out.Choices[0].Message.Content, nil
}

// readStream reads an SSE body to EOF and fails unless it carried the
// closing "data: [DONE]" event.
func readStream(r io.Reader) error {
	br := bufio.NewReaderSize(r, 4096)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if bytes.Equal(bytes.TrimRight(line, "\r\n"), doneLine) {
			done = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long line: its rest follows
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &reqError{kind: errReadFailed, detail: err.Error()}
		}
	}
	if !done {
		return &reqError{kind: errNoDone, detail: "the stream ended without data: [DONE]"}
	}
	return nil
}

// load says how long one side of one repetition runs: for a duration, or
// for a number of requests shared by all clients.
type load struct {
	clients  int
	duration time.Duration
	requests int
}

// sideResult is one side of one repetition.
type sideResult struct {
	Requests int            `json:"requests"`
	NewConns int            `json:"new_conns"` // connections opened (0 once warm)
	Errors   map[string]int `json:"errors,omitempty"`
	ReqPerS  float64        `json:"req_per_s"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	Elapsed  float64        `json:"elapsed_s"`
	// CPU per request while this side ran: the whole machine's busy time
	// (this program, the gateway, Ollama and its runner) and the
	// gateway's own (when it is a process this program started).
	BoxCPUMs float64 `json:"box_cpu_ms_per_req,omitempty"`
	OwnCPUMs float64 `json:"own_cpu_ms_per_req,omitempty"`

	errSamples map[string]string
}

func (r *sideResult) errorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// worker is one closed-loop client: it sends the next request as soon as
// the last one is read.
type worker struct {
	lats     []time.Duration
	last     time.Time // end of its last request, failed or not
	newConns int
	errs     map[string]int
	errx     map[string]string
}

// run drives one side with l.clients closed-loop clients. Requests that are
// in flight when the duration ends are read to the end, not cancelled, so
// the backend is left idle for the other side.
//
// Throughput is the sum over clients of (requests it completed) / (time from
// start to the end of its last request): exact for a closed loop, free of
// the rounding a fixed window has at low rates, and only slightly favoured
// by the drain at the end (the same for both sides).
func (t *target) run(ctx context.Context, body []byte, stream bool, l load) (sideResult, error) {
	start := time.Now()
	deadline := start.Add(l.duration)
	var (
		mu     sync.Mutex
		issued int
	)
	next := func() bool {
		if l.requests > 0 {
			mu.Lock()
			defer mu.Unlock()
			issued++
			return issued <= l.requests
		}
		return time.Now().Before(deadline)
	}
	workers := make([]worker, l.clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for ctx.Err() == nil && next() {
				t0 := time.Now()
				_, newConn, err := t.doTraced(ctx, body, stream)
				t1 := time.Now()
				if ctx.Err() != nil {
					return // interrupted: the request says nothing
				}
				w.last = t1
				if newConn {
					w.newConns++
				}
				if err != nil {
					w.addErr(err)
					continue
				}
				w.lats = append(w.lats, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return sideResult{}, err
	}

	res := sideResult{Errors: map[string]int{}, errSamples: map[string]string{}}
	var all []time.Duration
	end := start
	for i := range workers {
		w := &workers[i]
		all = append(all, w.lats...)
		res.NewConns += w.newConns
		if len(w.lats) > 0 {
			res.ReqPerS += float64(len(w.lats)) / w.last.Sub(start).Seconds()
		}
		if w.last.After(end) {
			end = w.last
		}
		for k, n := range w.errs {
			res.Errors[k] += n
			if _, ok := res.errSamples[k]; !ok {
				res.errSamples[k] = w.errx[k]
			}
		}
	}
	res.Requests = len(all)
	res.Elapsed = end.Sub(start).Seconds()
	slices.Sort(all)
	res.P50Ms = ms(percentile(all, 0.50))
	res.P99Ms = ms(percentile(all, 0.99))
	return res, nil
}

func (w *worker) addErr(err error) {
	if w.errs == nil {
		w.errs = map[string]int{}
		w.errx = map[string]string{}
	}
	k, detail := errTransport, err.Error()
	var re *reqError
	if errors.As(err, &re) {
		k, detail = re.key(), re.Error()
	}
	w.errs[k]++
	if _, ok := w.errx[k]; !ok {
		w.errx[k] = detail
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median of xs (mean of the middle two for an even count); xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
