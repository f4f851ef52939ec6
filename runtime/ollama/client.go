package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
)

// ErrUnavailable reports that the backend could not be reached or went away
// in the middle of an answer (the child died, is restarting, or refused the
// connection). Callers map it to 503.
var ErrUnavailable = errors.New("backend unavailable")

// Client talks to Ollama's native API. Unlike api.Client, its streaming calls
// do not allocate a fresh 8 MB scanner buffer per call: they read NDJSON lines
// through pooled readers, which keeps the per-request cost of the gateway low.
type Client struct {
	base func() *url.URL
	http *http.Client
}

// NewClient returns a client for the backend whose base URL base reports.
// base is called for every request, so a supervisor that moves the child to
// a new port is followed. A nil hc gets a client tuned for one local host.
func NewClient(base func() *url.URL, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: NewTransport()}
	}
	return &Client{base: base, http: hc}
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
func (c *Client) Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
	r := *req
	r.Stream = streaming(req.Stream)
	return streamNDJSON(c, ctx, "/api/chat", &r, func(resp *api.ChatResponse) (bool, error) {
		return resp.Done, fn(*resp)
	})
}

// Generate runs a completion request and calls fn for every response, in
// order, as Chat does.
func (c *Client) Generate(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error) error {
	r := *req
	r.Stream = streaming(req.Stream)
	return streamNDJSON(c, ctx, "/api/generate", &r, func(resp *api.GenerateResponse) (bool, error) {
		return resp.Done, fn(*resp)
	})
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

func streamNDJSON[T any](c *Client, ctx context.Context, path string, body any, fn func(*T) (done bool, err error)) error {
	resp, err := c.send(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
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
					return fmt.Errorf("%w: %s: response line over %d bytes", ErrUnavailable, path, maxLine)
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
					return api.StatusError{StatusCode: http.StatusInternalServerError, ErrorMessage: e.Error}
				}
			}
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				return fmt.Errorf("%w: %s: decode response: %v", ErrUnavailable, path, jerr)
			}
			done, ferr := fn(&v)
			if ferr != nil {
				return ferr
			}
			if done {
				return nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: %s: stream ended before done", ErrUnavailable, path)
			}
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
		}
	}
}
