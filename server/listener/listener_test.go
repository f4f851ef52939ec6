package listener

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"

	"github.com/warden-llm/warden/internal/testwait"
)

// recorder collects refusals.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) refused(ip netip.Addr, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ip.String()+" "+reason)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// from dials addr from the loopback source address src (127.0.0.2 and
// 127.0.0.3 stand in for LAN hosts) and makes one HTTP request.
func from(t *testing.T, src, url string) (int, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func serve(t *testing.T, cfg Config) (*httptest.Server, *Listener) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	l := Wrap(srv.Listener, cfg)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, l
}

func TestAllowlistAtAccept(t *testing.T) {
	allow, err := ParseAllow("server.allow", []string{"127.0.0.2/32", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	srv, _ := serve(t, Config{Allow: allow, OnRefused: rec.refused})

	if code, err := from(t, "127.0.0.2", srv.URL); err != nil || code != http.StatusOK {
		t.Errorf("allowed host: %d %v", code, err)
	}
	if code, err := from(t, "127.0.0.3", srv.URL); err == nil {
		t.Errorf("a host outside server.allow got an answer: %d", code)
	}
	// The refused client can see its connection closed before the
	// accepting goroutine reports the refusal (it closes, then reports).
	testwait.For(t, "the refusal reported", func() bool { return len(rec.list()) > 0 })
	if got := rec.list(); len(got) != 1 || got[0] != "127.0.0.3 not_allowed" {
		t.Errorf("refusals %v", got)
	}
}

func TestConnectionCeilings(t *testing.T) {
	var rec recorder
	srv, l := serve(t, Config{MaxConnsPerIP: 2, MaxConns: 3, OnRefused: rec.refused})
	addr := srv.Listener.Addr().String()
	dial := func(src string) net.Conn {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// A connection that was let in answers a request; a refused one is
	// closed before a byte is read.
	alive := func(c net.Conn) bool {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		b := make([]byte, 12)
		n, _ := io.ReadFull(c, b)
		return n == 12 && string(b) == "HTTP/1.1 200"
	}
	a1, a2 := dial("127.0.0.2"), dial("127.0.0.2")
	if !alive(a1) || !alive(a2) {
		t.Fatal("the first two connections of a host were refused")
	}
	if alive(dial("127.0.0.2")) {
		t.Error("a third connection from one host was let in (per-IP ceiling 2)")
	}
	b1 := dial("127.0.0.3")
	if !alive(b1) {
		t.Fatal("another host's first connection was refused")
	}
	if alive(dial("127.0.0.4")) {
		t.Error("a fourth connection was let in (ceiling 3)")
	}
	// Closing gives the slot back.
	a1.Close()
	testwait.For(t, "the closed connection's slot", func() bool { return l.Open() == 2 })
	if !alive(dial("127.0.0.4")) {
		t.Error("a connection was refused after one closed")
	}
	if got := rec.list(); len(got) != 2 || got[0] != "127.0.0.2 too_many" || got[1] != "127.0.0.4 too_many" {
		t.Errorf("refusals %v", got)
	}
}

func TestParseAllow(t *testing.T) {
	got, err := ParseAllow("x", []string{"192.168.1.7/24", "10.0.0.5", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.168.1.0/24", "10.0.0.5/32", "::1/128"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := ParseAllow("server.allow", []string{"10.0.0.0/33", "lan"}); err == nil {
		t.Error("bad CIDRs were accepted")
	}
	if !Allowed(got, netip.MustParseAddr("::ffff:10.0.0.5")) {
		t.Error("an IPv4-mapped address was not matched")
	}
	if !Allowed(nil, netip.MustParseAddr("203.0.113.1")) {
		t.Error("an empty allowlist refused an address")
	}
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "1.2.3.4/32", "", "x/9", "fe80::1%eth0/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseAllow("x", []string{s})
		if err == nil && len(ps) != 1 {
			t.Fatalf("%q: %d prefixes, no error", s, len(ps))
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("%q: invalid prefix %v", s, p)
			}
		}
	})
}

func TestLockout(t *testing.T) {
	p := func(s ...string) []netip.Prefix {
		ps, err := ParseAllow("x", s)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	if err := Lockout("127.0.0.1:8080", p("192.168.1.0/24")); err == nil {
		t.Error("a loopback listener with an allowlist without loopback was accepted")
	}
	for _, ok := range []struct {
		listen string
		allow  []netip.Prefix
	}{
		{"127.0.0.1:8080", p("127.0.0.1")},
		{"localhost:8080", p("::1", "10.0.0.0/8")},
		{"0.0.0.0:8443", p("192.168.1.0/24")},
		{"127.0.0.1:8080", nil},
	} {
		if err := Lockout(ok.listen, ok.allow); err != nil {
			t.Errorf("Lockout(%s, %v): %v", ok.listen, ok.allow, err)
		}
	}
}
