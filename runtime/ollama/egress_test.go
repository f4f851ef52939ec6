package ollama

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// The egress proxy tunnels HTTPS (CONNECT) and forwards plain HTTP, and
// close ends a tunnel still open and waits for its goroutines.
func TestEgressProxy(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls "+r.URL.Path)
	}))
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "plain "+r.URL.Path)
	}))
	defer plain.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newEgressProxy(ln, slog.New(slog.DiscardHandler))
	p.allow = func(net.IP) bool { return true } // the test servers are on loopback
	closed := false
	defer func() {
		if !closed {
			p.close()
		}
	}()
	proxyURL, _ := url.Parse("http://" + ln.Addr().String())
	if env := p.env(); len(env) != 2 || env[0] != "HTTPS_PROXY="+proxyURL.String() {
		t.Errorf("env = %q", env)
	}

	tr := tlsSrv.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxyURL)
	defer tr.CloseIdleConnections()
	for _, tc := range []struct{ url, want string }{
		{tlsSrv.URL + "/v2/x", "tls /v2/x"},
		{plain.URL + "/v2/y", "plain /v2/y"},
	} {
		resp, err := (&http.Client{Transport: tr}).Get(tc.url)
		if err != nil {
			t.Fatalf("GET %s through the proxy: %v", tc.url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.url, b, tc.want)
		}
	}

	// A tunnel left open is ended by close.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host := strings.TrimPrefix(plain.URL, "http://")
	if _, err := io.WriteString(c, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("CONNECT answered %q (%v)", line, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("CONNECT header end %q (%v)", blank, err)
	}
	p.close() // returns only once the tunnel's goroutines are done
	closed = true
	if _, err := br.ReadString('\n'); err == nil {
		t.Errorf("tunnel still open after close")
	}

	// By default the host's loopback is refused, by IP or by name, for
	// tunnels and plain requests; a bad request gets a 400, not a panic.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p2 := newEgressProxy(ln2, slog.New(slog.DiscardHandler))
	defer p2.close()
	proxy2, _ := url.Parse("http://" + ln2.Addr().String())
	tr2 := tlsSrv.Client().Transport.(*http.Transport).Clone()
	tr2.Proxy = http.ProxyURL(proxy2)
	defer tr2.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(host)
	for _, u := range []string{tlsSrv.URL, plain.URL, "http://localhost:" + port + "/"} {
		resp, err := (&http.Client{Transport: tr2}).Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET %s through the default proxy: %d, want 403", u, resp.StatusCode)
			}
		} else if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("GET %s through the default proxy: %v, want Forbidden", u, err)
		}
	}
	resp, err := http.Get("http://" + ln2.Addr().String() + "/relative")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("relative URL: %d, want 400", resp.StatusCode)
	}
}

func TestEgressAllowed(t *testing.T) {
	for ip, want := range map[string]bool{
		"127.0.0.1":       false,
		"::1":             false,
		"0.0.0.0":         false,
		"169.254.169.254": false, // cloud metadata
		"fe80::1":         false,
		"224.0.0.1":       false,
		"192.168.1.20":    true, // a registry on the LAN
		"140.82.112.3":    true,
	} {
		if got := egressAllowed(net.ParseIP(ip)); got != want {
			t.Errorf("egressAllowed(%s) = %v, want %v", ip, got, want)
		}
	}
}
