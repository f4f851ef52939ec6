package listener

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
)

// headerServer serves "ok" on a guarded listener with a short header
// timeout (it bounds how long the test waits, it is not asserted), a
// short idle timeout and the hooks OnHeaderTimeout needs; it counts
// header timeouts.
func headerServer(t *testing.T, useTLS bool) (*httptest.Server, *Listener, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(Track(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	l := Wrap(srv.Listener, Config{OnHeaderTimeout: func(netip.Addr) { n.Add(1) }})
	srv.Listener = l
	srv.Config.ReadHeaderTimeout = 100 * time.Millisecond
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Config.ConnContext = ConnContext
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, l, &n
}

// closedByServer reads c until the server closes it and says whether it
// did (EOF or a reset, not the test's own deadline).
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang fails instead of blocking the run
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server did not close the connection: %v", err)
	}
}

// TestHeaderTimeout: a client that sends half a request line and nothing
// more is disconnected and counted once; so is one that sends nothing, and
// one that stalls its TLS handshake. A keep-alive connection closed idle
// after a served request is not counted.
func TestHeaderTimeout(t *testing.T) {
	srv, l, n := headerServer(t, false)
	addr := srv.Listener.Addr().String()

	// Half a request line.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/mod"); err != nil {
		t.Fatal(err)
	}
	closedByServer(t, c)
	testwait.For(t, "the connection's slot to be released", func() bool { return l.Open() == 0 })
	if got := n.Load(); got != 1 {
		t.Fatalf("header timeouts after half a request line = %d, want 1", got)
	}

	// A served request, then the connection idles out: not a header timeout.
	k, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if _, err := io.WriteString(k, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(k), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("served request: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	closedByServer(t, k)
	testwait.For(t, "the idle connection's slot to be released", func() bool { return l.Open() == 0 })
	if got := n.Load(); got != 1 {
		t.Errorf("header timeouts after an idle keep-alive close = %d, want still 1", got)
	}

	// A served request, then half of the next one: a header timeout.
	k2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	br := bufio.NewReader(k2)
	if _, err := io.WriteString(k2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("served request: %v %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	if _, err := io.WriteString(k2, "GET / HTTP/1.1\r\nHost: "); err != nil {
		t.Fatal(err)
	}
	_ = k2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server did not close the stalled keep-alive connection")
		}
	}
	testwait.For(t, "the stalled connection's slot to be released", func() bool { return l.Open() == 0 })
	if got := n.Load(); got != 2 {
		t.Errorf("header timeouts after a stalled second request = %d, want 2", got)
	}
}

// TestHeaderTimeoutTLS: a client that opens a TLS connection and never
// finishes its handshake is disconnected and counted; a full HTTPS request
// is not.
func TestHeaderTimeoutTLS(t *testing.T) {
	srv, l, n := headerServer(t, true)
	addr := srv.Listener.Addr().String()
	hc := srv.Client()
	resp, err := hc.Get(srv.URL)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("https request: %v %v", resp, err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	testwait.For(t, "the https connection to close", func() bool { return l.Open() == 0 })
	if got := n.Load(); got != 0 {
		t.Fatalf("header timeouts after a served https request = %d, want 0", got)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "\x16\x03\x01"); err != nil { // the start of a ClientHello
		t.Fatal(err)
	}
	closedByServer(t, c)
	testwait.For(t, "the stalled handshake's slot to be released", func() bool { return l.Open() == 0 })
	if got := n.Load(); got != 1 {
		t.Errorf("header timeouts after a stalled handshake = %d, want 1", got)
	}
}
