package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/models"
)

// ErrUnavailable reports that the backend could not be reached or went away
// in the middle of an answer (the child died, is restarting, or refused the
// connection). Callers map it to 503.
var ErrUnavailable = errors.New("backend unavailable")

// Client talks to Ollama's native API. Unlike api.Client, its streaming calls
// do not allocate a fresh 8 MB scanner buffer per call: they read NDJSON lines
// through pooled readers, which keeps the per-request cost of the gateway low.
//
// After a streaming call it abandoned (the caller's context ended or its
// callback failed before the last response), the client checks that Ollama
// did not lose the model's slot with it, and frees the slot when it did; see
// slots.go. Close stops those checks.
type Client struct {
	// ProbeTimeout bounds the slot check after an abandoned stream: a probe
	// of one token that gets no slot within it means the slot was lost.
	ProbeTimeout time.Duration
	// UnloadTimeout bounds the unload of a model that lost a slot.
	UnloadTimeout time.Duration
	// Logger receives the slot checks' findings (nil: discard).
	Logger *slog.Logger

	base func() *url.URL
	http *http.Client

	ctx    context.Context // cancelled by Close; parent of the slot checks
	cancel context.CancelFunc
	wg     sync.WaitGroup // the slot check goroutines

	mu     sync.Mutex
	closed bool
	checks map[string]*slotCheck // by slotKey of the model

	resets atomic.Int64
}

// NewClient returns a client for the backend whose base URL base reports.
// base is called for every request, so a supervisor that moves the child to
// a new port is followed. A nil hc gets a client tuned for one local host.
// The exported fields are set to their defaults: ProbeTimeout 30s,
// UnloadTimeout 2m.
func NewClient(base func() *url.URL, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: NewTransport()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		ProbeTimeout:  30 * time.Second,
		UnloadTimeout: 2 * time.Minute,
		base:          base,
		http:          hc,
		ctx:           ctx,
		cancel:        cancel,
		checks:        make(map[string]*slotCheck),
	}
}

// NewTransport returns an HTTP transport for one loopback backend: no proxy
// (the environment's proxy settings must never apply to the child), and
// enough idle connections that a busy gateway does not dial per request.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// Chat runs a chat request and calls fn for every response, in order; the
// last one has Done set. With req.Stream false (or nil) the backend answers
// in one response, which saves it a flush per token; with it true, one
// response per token. If the answer ends without a done response (the
// backend died), Chat returns an error wrapping ErrUnavailable.
//
// Chat waits while the model's slots are being checked after an abandoned
// stream, so that no request is sent to a backend that may have none left.
func (c *Client) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	if err := c.waitSlots(ctx, req.Model); err != nil {
		return err
	}
	r := *req
	r.Stream = streaming(req.Stream)
	abandoned, err := streamNDJSON(c, ctx, "/api/chat", &r, func(resp *api.ChatResponse) (bool, error) {
		return resp.Done, fn(*resp)
	})
	if abandoned && *r.Stream {
		c.checkSlots(req.Model, req.Options, req.KeepAlive)
	}
	return err
}

// Generate runs a completion request and calls fn for every response, in
// order, as Chat does.
func (c *Client) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	if err := c.waitSlots(ctx, req.Model); err != nil {
		return err
	}
	r := *req
	r.Stream = streaming(req.Stream)
	abandoned, err := streamNDJSON(c, ctx, "/api/generate", &r, func(resp *api.GenerateResponse) (bool, error) {
		return resp.Done, fn(*resp)
	})
	if abandoned && *r.Stream {
		c.checkSlots(req.Model, req.Options, req.KeepAlive)
	}
	return err
}

var (
	streamOn  = true
	streamOff = false
)

// streaming makes the stream flag explicit: Ollama streams when it is nil.
func streaming(s *bool) *bool {
	if s != nil && *s {
		return &streamOn
	}
	return &streamOff
}

// Embed embeds one or more inputs.
func (c *Client) Embed(ctx context.Context, req *api.EmbedRequest) (*api.EmbedResponse, error) {
	if err := c.waitSlots(ctx, req.Model); err != nil {
		return nil, err
	}
	var resp api.EmbedResponse
	if err := c.do(ctx, http.MethodPost, "/api/embed", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// List lists the models the backend holds.
func (c *Client) List(ctx context.Context) (*api.ListResponse, error) {
	var resp api.ListResponse
	if err := c.do(ctx, http.MethodGet, "/api/tags", nil, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Show describes one model.
func (c *Client) Show(ctx context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	var resp api.ShowResponse
	if err := c.do(ctx, http.MethodPost, "/api/show", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// ListRunning lists the models the backend holds in memory (/api/ps).
func (c *Client) ListRunning(ctx context.Context) (*api.ProcessResponse, error) {
	var resp api.ProcessResponse
	if err := c.do(ctx, http.MethodGet, "/api/ps", nil, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

var _ models.API = (*Client)(nil)

// Version reports the backend's version; it doubles as a health check.
func (c *Client) Version(ctx context.Context) (string, error) {
	var resp struct {
		Version string `json:"version"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/version", nil, &resp); err != nil {
		return "", err
	}
	return resp.Version, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: decode %s: %v", ErrUnavailable, path, err)
	}
	return nil
}

// send issues a request and returns the response when its status is 2xx.
// Other statuses become api.StatusError with the backend's message.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s request: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.base().JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("new %s request: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		se.ErrorMessage = e.Error
	} else {
		se.ErrorMessage = string(bytes.TrimSpace(b))
	}
	return se
}

// readers pools the buffered readers of streaming calls.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// maxLine bounds one NDJSON line (a response chunk with logprobs or tool
// calls is far below it).
const maxLine = 16 << 20

var errorPrefix = []byte(`{"error"`)

// streamNDJSON posts body to path and calls fn for every NDJSON response
// until one is done. abandoned reports that it stopped reading while the
// backend may still have been answering: the context ended after the
// request went out, or fn or decoding failed. Ollama then sees the
// connection close in the middle of its answer.
func streamNDJSON[T any](c *Client, ctx context.Context, path string, body any, fn func(*T) (done bool, err error)) (abandoned bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	resp, err := c.send(ctx, http.MethodPost, path, body)
	if err != nil {
		return ctx.Err() != nil, err
	}
	defer resp.Body.Close()

	br := readers.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()

	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it.
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
				if len(long) > maxLine {
					return true, fmt.Errorf("%w: %s: response line over %d bytes", ErrUnavailable, path, maxLine)
				}
			}
			line = long
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if bytes.HasPrefix(line, errorPrefix) {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(line, &e) == nil && e.Error != "" {
					// Ollama sends an error line once its generation has
					// ended: nothing is left running.
					return false, api.StatusError{StatusCode: http.StatusInternalServerError, ErrorMessage: e.Error}
				}
			}
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				return true, fmt.Errorf("%w: %s: decode response: %v", ErrUnavailable, path, jerr)
			}
			done, ferr := fn(&v)
			if ferr != nil {
				return !done, ferr
			}
			if done {
				return false, nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return false, fmt.Errorf("%w: %s: stream ended before done", ErrUnavailable, path)
			}
			return false, fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
		}
	}
}
