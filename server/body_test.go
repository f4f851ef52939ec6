package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/keys"
)

// halfSent opens a connection that sends a chat request declaring a body
// of size bytes and only its first bytes.
func halfSent(t *testing.T, addr string, size int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer good\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":\"demo\",\"messages\":[", size)
	return conn
}

func newBodyServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	cfg.Keys = fakeKeys{}
	s, err := New(&fakeBackend{chat: scripted("ok"), models: []string{"demo:latest"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

// TestHalfSentBodiesOverBudget is issue 11's hostage memory: one IP's
// half-sent 1 MiB bodies are counted before they are read; once they fill
// the IP's in-flight budget the next request is refused with 429 before
// its body is read, and the accounting returns to zero when the clients
// leave.
func TestHalfSentBodiesOverBudget(t *testing.T) {
	const mib = 1 << 20
	s, ts := newBodyServer(t, Config{MaxBodyBytes: mib, MaxInflightBodyBytesPerIP: 4 * mib})
	addr := strings.TrimPrefix(ts.URL, "http://")
	var conns []net.Conn
	for range 4 {
		conns = append(conns, halfSent(t, addr, mib))
	}
	testwait.For(t, "four half-sent bodies counted", func() bool { return s.bodies.inFlight() == 4*mib })

	for _, size := range []int{mib, 100} {
		conn := halfSent(t, addr, size)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "too_many_bodies_in_flight") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("body of %d bytes over the budget: %d %s", size, resp.StatusCode, body)
		}
		conn.Close()
	}
	if got := s.bodies.inFlight(); got != 4*mib {
		t.Errorf("refused bodies changed the accounting: %d in flight", got)
	}

	for _, c := range conns {
		c.Close()
	}
	testwait.For(t, "the accounting back to zero", func() bool { return s.bodies.inFlight() == 0 })
	if resp, out := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Errorf("after the clients left: %d %s", resp.StatusCode, out)
	}
}

// TestSlowBodyCut: a body that stops arriving is cut with 408 once the
// grace is over, and its budget is given back; a body sent at once is
// served.
func TestSlowBodyCut(t *testing.T) {
	s, ts := newBodyServer(t, Config{BodyGrace: 50 * time.Millisecond, MinBodyRate: 1 << 20})
	conn := halfSent(t, strings.TrimPrefix(ts.URL, "http://"), 1000)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "request_timeout") {
		t.Errorf("stalled body: %d %s, want 408", resp.StatusCode, body)
	}
	testwait.For(t, "the accounting back to zero", func() bool { return s.bodies.inFlight() == 0 })

	_, ts = newBodyServer(t, Config{})
	for _, stream := range []string{"false", "true"} {
		if resp, out := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 || !strings.Contains(out, "ok") {
			t.Errorf("stream=%s: %d %s", stream, resp.StatusCode, out)
		}
	}
}

// TestHalfSentBodiesCountAgainstKeyConcurrency: a key limited to one
// request at a time cannot hold a second half-sent body; the count is
// given back when the client leaves.
func TestHalfSentBodiesCountAgainstKeyConcurrency(t *testing.T) {
	s, ts := newBodyServer(t, Config{DefaultLimits: keys.Limits{Concurrency: 1}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	first := halfSent(t, addr, 1000)
	testwait.For(t, "the first body counted for its key", func() bool { return keyBodiesInFlight(s) == 1 })
	conn := halfSent(t, addr, 1000)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "rate_limit_exceeded") {
		t.Errorf("second half-sent body of a key with concurrency 1: %d %s", resp.StatusCode, body)
	}
	first.Close()
	testwait.For(t, "the key's count back to zero", func() bool { return keyBodiesInFlight(s) == 0 })
	if resp, out := post(t, ts, "/v1/chat/completions", "", `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Errorf("after the first client left: %d %s", resp.StatusCode, out)
	}
}

func keyBodiesInFlight(s *Server) int64 {
	s.keyBodies.mu.Lock()
	defer s.keyBodies.mu.Unlock()
	var n int64
	for _, v := range s.keyBodies.inUse {
		n += v
	}
	return n
}

// TestDecodedRequestOwnsItsStrings: the body buffers are reused, so what
// a decoded request holds must not be a view of its body.
func TestDecodedRequestOwnsItsStrings(t *testing.T) {
	var first chatRequest
	if err := decodeJSON(strings.NewReader(`{"model":"aaaa","messages":[{"role":"user","content":"first text"}],"tool_choice":"auto"}`), &first); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var next chatRequest
		if err := decodeJSON(strings.NewReader(`{"model":"zzzz","messages":[{"role":"user","content":"XXXXXXXXXX"}],"tool_choice":"none"}`), &next); err != nil {
			t.Fatal(err)
		}
	}
	if first.Model != "aaaa" || first.Messages[0].Content != "first text" || string(first.ToolChoice) != `"auto"` {
		t.Errorf("first request changed by later ones: %q %v %s", first.Model, first.Messages[0].Content, first.ToolChoice)
	}
}

// TestDecodeLargeBody: a body past the first buffer's size grows it and
// decodes whole.
func TestDecodeLargeBody(t *testing.T) {
	text := strings.Repeat("x", 70000)
	var req chatRequest
	if err := decodeJSON(strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"`+text+`"}]}`), &req); err != nil {
		t.Fatal(err)
	}
	if req.Messages[0].Content != text {
		t.Errorf("content has %d bytes, want %d", len(fmt.Sprint(req.Messages[0].Content)), len(text))
	}
}
