package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-llm/warden/internal/testwait"
)

// TestReadHeaderTimeoutDisconnects: with server.read_header_timeout set
// in the config, serve's listener and http.Server (in process, on
// loopback) close a client that sends half a request line and nothing
// more, and warden_header_timeouts_total counts it. The timeout only
// bounds how long the test waits; no duration is asserted.
func TestReadHeaderTimeoutDisconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "warden.toml")
	if err := os.WriteFile(path, []byte("[server]\nread_header_timeout = \"100ms\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, envMap(map[string]string{"HOME": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Server.ReadHeaderTimeout != 100*time.Millisecond {
		t.Fatalf("read_header_timeout = %v, want 100ms", cfg.Server.ReadHeaderTimeout)
	}

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := newConnMetrics()
	reg := prometheus.NewRegistry()
	ln := guardListener(tcp, cfg.Server, nil, conns, func(string) {})
	conns.register(reg, ln.Open)
	hs := newHTTPServer(t.Context(), cfg.Server, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = hs.Close()
		<-done
	})

	// A whole request is served and not counted.
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a whole request: %v %v", resp, err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	testwait.For(t, "the served connection to close", func() bool { return ln.Open() == 0 })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1/chat/compl"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang fails instead of blocking the run
	// Go's server may answer 400 before closing; the close (EOF) is what counts.
	got, err := io.ReadAll(c)
	if err != nil || strings.Contains(string(got), " 200 ") {
		t.Fatalf("read from a client with half a request line: %q, %v; want the server to close it (EOF)", got, err)
	}
	testwait.For(t, "the cut connection's slot to be released", func() bool { return ln.Open() == 0 })
	if got := testutil.ToFloat64(conns.headerTimeouts); got != 1 {
		t.Errorf("warden_header_timeouts_total = %v, want 1", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP warden_header_timeouts_total Connections closed because the client did not finish a request's headers (or its TLS handshake) within server.read_header_timeout.
# TYPE warden_header_timeouts_total counter
warden_header_timeouts_total 1
`), "warden_header_timeouts_total"); err != nil {
		t.Errorf("metrics: %v", err)
	}
}
