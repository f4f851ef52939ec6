package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/openai"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/keys"
)

// How streams end, and what the audit trail says about it: slow readers,
// clients that leave, backends that die, a server that shuts down.

// tableKeys accepts each token of its table as the key it names.
type tableKeys map[string]string

func (t tableKeys) Authenticate(token string) (*keys.Principal, error) {
	id, ok := t[token]
	if !ok {
		return nil, keys.ErrInvalidKey
	}
	return &keys.Principal{KeyID: id, Scopes: keys.DefaultScopes()}, nil
}

// completion returns the completion record the auditor got; the server
// has ended (its handlers have returned) when it is called.
func completion(t *testing.T, aud *fakeAuditor) audit.Record {
	t.Helper()
	aud.mu.Lock()
	defer aud.mu.Unlock()
	for _, r := range aud.recs {
		if r.Kind == audit.KindCompletion {
			return r
		}
	}
	t.Fatalf("no completion record among %d records", len(aud.recs))
	return audit.Record{}
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// openStream posts a streaming chat request and returns the response, its
// body unread.
func openStream(t *testing.T, ctx context.Context, ts *httptest.Server, content string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"`+content+`"}]}`))
	req.Header.Set("Authorization", "Bearer good")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

// readUntil reads lines from br until one contains want.
func readUntil(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if strings.Contains(line, want) {
			return
		}
		if err != nil {
			t.Fatalf("stream ended (%v) before %q", err, want)
		}
	}
}

// TestNonReadingStreamsDoNotStarveOtherKeys: two keys open streams they
// never read, more than the model has slots, on a backend that streams
// until it is cancelled. Each is cut once its client has not read within
// the write timeout, its backend call cancelled and its slot freed, so a
// third key is served.
func TestNonReadingStreamsDoNotStarveOtherKeys(t *testing.T) {
	started := make(chan struct{}, 16)
	piece := strings.Repeat("x", 4096)
	b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if req.Messages[len(req.Messages)-1].Content != "forever" {
			return scripted("served")(ctx, req, fn)
		}
		started <- struct{}{}
		for {
			if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: piece}}); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}}
	queue := sched.New(sched.Config{Slots: func(string) int { return 2 }, QueueTimeout: time.Minute})
	ts := newTestServer(t, b, Config{
		Keys:         tableKeys{"a": "key-a", "b": "key-b", "victim": "key-victim"},
		Queue:        queue,
		WriteTimeout: 50 * time.Millisecond,
	})

	body := `{"model":"demo","stream":true,"messages":[{"role":"user","content":"forever"}]}`
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 6 {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		key := []string{"a", "b"}[i%2]
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", key, len(body), body)
	}
	// Both slots are held by streams nobody reads.
	<-started
	<-started

	c := oai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("victim"), option.WithMaxRetries(0))
	res, err := c.Chat.Completions.New(t.Context(), chatParams("", "hello"))
	if err != nil {
		t.Fatalf("the third key was not served: %v", err)
	}
	if got := res.Choices[0].Message.Content; got != "served" {
		t.Errorf("third key got %q, want served", got)
	}
}

// TestStreamAbortRecorded: a client that reads part of a stream and leaves
// is recorded as 499 with the hash and count of what it was sent, and its
// backend call is cancelled.
func TestStreamAbortRecorded(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	cancelled := make(chan struct{})
	b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		for _, p := range []string{"one ", "two"} {
			if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: p}}); err != nil {
				return err
			}
		}
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}}
	ts := newTestServer(t, b, Config{Audit: aud})
	ctx, cancel := context.WithCancel(t.Context())
	resp := openStream(t, ctx, ts, "hi")
	readUntil(t, bufio.NewReader(resp.Body), `"content":"two"`)
	cancel()
	resp.Body.Close()
	<-cancelled
	ts.Close() // waits for the handler

	rec := completion(t, aud)
	if rec.Status != 499 || rec.ResponseSHA256 != hashOf("one two") || rec.TokensOut != 2 {
		t.Errorf("record status %d hash %s tokens %d; want 499, the hash of %q, 2", rec.Status, rec.ResponseSHA256, rec.TokensOut, "one two")
	}
}

// TestDisconnectNoticedWhileOutputHeld: the backend's pieces release
// nothing (the filter holds them back, or they are empty); the client
// leaves; the backend call is cancelled and the request recorded as 499.
func TestDisconnectNoticedWhileOutputHeld(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	cancelled := make(chan struct{})
	b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: ""}}); err != nil {
			return err
		}
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}}
	ts := newTestServer(t, b, Config{Audit: aud})
	ctx, cancel := context.WithCancel(t.Context())
	resp := openStream(t, ctx, ts, "hi")
	readUntil(t, bufio.NewReader(resp.Body), `"role":"assistant"`) // the first chunk, with no text
	cancel()
	resp.Body.Close()
	<-cancelled
	ts.Close()
	if rec := completion(t, aud); rec.Status != 499 || rec.ResponseSHA256 != "" {
		t.Errorf("record status %d hash %q; want 499 and no hash", rec.Status, rec.ResponseSHA256)
	}
}

// TestStreamedToolCallHash: a streamed tool call is part of what the
// record's hash covers.
func TestStreamedToolCallHash(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	args := api.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	call := api.ToolCall{Function: api.ToolCallFunction{Name: "weather", Arguments: args}}
	b := &fakeBackend{chat: func(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", ToolCalls: []api.ToolCall{call}}}); err != nil {
			return err
		}
		return fn(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: 1}})
	}}
	ts := newTestServer(t, b, Config{Audit: aud})
	s := sdk(ts).Chat.Completions.NewStreaming(t.Context(), chatParams("", "weather?"))
	var name string
	for s.Next() {
		for _, ch := range s.Current().Choices {
			for _, tc := range ch.Delta.ToolCalls {
				name += tc.Function.Name
			}
		}
	}
	if err := s.Err(); err != nil || name != "weather" {
		t.Fatalf("stream: %v, tool call %q", err, name)
	}
	ts.Close()
	want, _ := json.Marshal(openai.ToToolCalls([]api.ToolCall{call}))
	rec := completion(t, aud)
	if rec.Status != 200 || rec.ResponseSHA256 == "" || rec.ResponseSHA256 != hashOf(string(want)) {
		t.Errorf("record status %d hash %q; want 200 and the hash of %s", rec.Status, rec.ResponseSHA256, want)
	}
}

// TestBackendDeathRecorded: a backend that dies before its answer gives
// 503 with Retry-After and backend_unavailable; one that dies mid-stream
// ends the stream with that error event; both are recorded as 503, the
// stream with the hash of what it delivered. A runner the backend reports
// dead counts as the backend's death.
func TestBackendDeathRecorded(t *testing.T) {
	died := fmt.Errorf("%w: /api/chat: stream ended before done", ollama.ErrUnavailable)
	runner := api.StatusError{StatusCode: 500, ErrorMessage: "an error was encountered while running the model: llama runner process has terminated: signal: killed"}
	for _, tt := range []struct {
		name string
		err  error
	}{{"unavailable", died}, {"runner killed", runner}} {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			aud := &fakeAuditor{events: &events}
			b := &fakeBackend{chat: func(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
				if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: "partial"}}); err != nil {
					return err
				}
				return tt.err
			}}
			ts := newTestServer(t, b, Config{Audit: aud})
			c := sdk(ts)

			_, err := c.Chat.Completions.New(t.Context(), chatParams("", "hi"))
			var ae *oai.Error
			if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Code != "backend_unavailable" || ae.Response.Header.Get("Retry-After") == "" {
				t.Errorf("mid-request: %v, want 503 backend_unavailable with Retry-After", err)
			}
			if rec := completion(t, aud); rec.Status != 503 {
				t.Errorf("mid-request record status %d, want 503", rec.Status)
			}

			aud.mu.Lock()
			aud.recs = nil
			aud.mu.Unlock()
			s := c.Chat.Completions.NewStreaming(t.Context(), chatParams("", "hi"))
			var got string
			for s.Next() {
				for _, ch := range s.Current().Choices {
					got += ch.Delta.Content
				}
			}
			if err := s.Err(); err == nil || !strings.Contains(err.Error(), "backend_unavailable") || got != "partial" {
				t.Errorf("mid-stream: %q then %v, want partial then an error event with backend_unavailable", got, err)
			}
			ts.Close()
			if rec := completion(t, aud); rec.Status != 503 || rec.ResponseSHA256 != hashOf("partial") {
				t.Errorf("mid-stream record status %d hash %s, want 503 and the hash of what was sent", rec.Status, rec.ResponseSHA256)
			}
		})
	}
}

// TestCutRequestsEndsStreams: when the drain timeout has passed, a stream
// still running ends with an error event (no [DONE]) and is recorded
// with its status, 503.
func TestCutRequestsEndsStreams(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: "begun"}}); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	b.models = []string{"demo:latest"}
	srv, err := New(b, Config{Keys: fakeKeys{}, Audit: aud})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	resp := openStream(t, t.Context(), ts, "hi")
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readUntil(t, br, `"content":"begun"`)
	srv.CutRequests()
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), `data: {"error":{`) || !strings.Contains(string(rest), "server_shutting_down") || strings.Contains(string(rest), "[DONE]") {
		t.Errorf("rest of the stream after the cut:\n%s\nwant an error event with server_shutting_down and no [DONE]", rest)
	}
	ts.Close()
	if rec := completion(t, aud); rec.Status != 503 || rec.ResponseSHA256 != hashOf("begun") {
		t.Errorf("record status %d hash %s, want 503 and the hash of what was sent", rec.Status, rec.ResponseSHA256)
	}
}

// TestStreamWritesNoRace runs streams with keep-alives racing the first
// event and the queue header, for the race detector.
func TestStreamWritesNoRace(t *testing.T) {
	b := &fakeBackend{chat: scripted("a", "b", "c")}
	queue := sched.New(sched.Config{Slots: func(string) int { return 1 }})
	ts := newTestServer(t, b, Config{Queue: queue, KeepAliveInterval: time.Microsecond})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
				strings.NewReader(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer good")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			// The queue header may lose the race to a keep-alive (the
			// headers go out with it); the events must all arrive.
			if !strings.Contains(string(out), `"content":"c"`) || !strings.HasSuffix(string(out), "data: [DONE]\n\n") {
				t.Errorf("stream:\n%s", out)
			}
		})
	}
	wg.Wait()
}

// TestAbortRecordedNotStreamed: a client that leaves before its whole
// answer is recorded as 499.
func TestAbortRecordedNotStreamed(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	started := make(chan struct{})
	b := &fakeBackend{chat: func(ctx context.Context, _ *api.ChatRequest, _ func(api.ChatResponse) error) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	ts := newTestServer(t, b, Config{Audit: aud})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := sdk(ts).Chat.Completions.New(ctx, chatParams("", "hi"))
		errc <- err
	}()
	<-started
	cancel()
	<-errc
	ts.Close()
	if rec := completion(t, aud); rec.Status != 499 {
		t.Errorf("record status %d, want 499", rec.Status)
	}
}

// TestRequestDeadline: a backend call that outlives the request deadline
// ends with 504 request_timeout, streamed (the error event, once the
// stream has started) or not; the backend sees its context end.
func TestRequestDeadline(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "stream"}[stream], func(t *testing.T) {
			ended := make(chan error, 1)
			b := &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
				if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: "a"}}); err != nil {
					return err
				}
				<-ctx.Done()
				ended <- ctx.Err()
				return ctx.Err()
			}}
			ts := newTestServer(t, b, Config{RequestTimeout: 50 * time.Millisecond})
			resp, body := post(t, ts, "/v1/chat/completions", "application/json",
				`{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":`+strconv.FormatBool(stream)+`}`)
			if err := <-ended; err == nil {
				t.Fatal("the backend's context did not end")
			}
			if !strings.Contains(body, `"`+codeTimeout+`"`) {
				t.Fatalf("%d %s: want the %s error", resp.StatusCode, body, codeTimeout)
			}
			if want := map[bool]int{false: http.StatusGatewayTimeout, true: http.StatusOK}[stream]; resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
		})
	}
}
