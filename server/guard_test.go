package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// countingKeys counts key lookups.
type countingKeys struct {
	fakeKeys
	n atomic.Int64
}

func (k *countingKeys) Authenticate(token string) (*keys.Principal, error) {
	k.n.Add(1)
	return k.fakeKeys.Authenticate(token)
}

func TestAdminAllow(t *testing.T) {
	k := newKeyed(t, &fakeBackend{}, Config{AdminAllow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	resp, body := k.do(t, http.MethodGet, "/admin/keys", k.admin, "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "ip_not_allowed") {
		t.Errorf("admin API from loopback with admin.allow 10.0.0.0/8: %d %s", resp.StatusCode, body)
	}
	// X-Forwarded-For from a peer that is not a trusted proxy is ignored.
	req, _ := http.NewRequest(http.MethodGet, k.ts.URL+"/admin/keys", nil)
	req.Header.Set("Authorization", "Bearer "+k.admin)
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusForbidden {
		t.Errorf("X-Forwarded-For from an untrusted peer was believed: %d", r2.StatusCode)
	}
	// The API itself is not behind admin.allow.
	if resp, _ := k.do(t, http.MethodGet, "/v1/models", k.admin, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/v1/models: %d", resp.StatusCode)
	}
	// The default is loopback only, which the test client is.
	def := newKeyed(t, &fakeBackend{}, Config{})
	if resp, _ := def.do(t, http.MethodGet, "/admin/keys", def.admin, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("admin API from loopback by default: %d", resp.StatusCode)
	}
}

func TestShedBeforeKeyLookup(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	ck := &countingKeys{}
	m := NewMetrics()
	var refusedIPs atomic.Int64
	ts := newTestServer(t, &fakeBackend{}, Config{Keys: ck, MaxRPS: 5, Now: clock.Now, Metrics: m,
		OnAuthRefused: func(string) { refusedIPs.Add(1) }})
	statuses := map[int]int{}
	var retry string
	for range 20 {
		resp, _ := send(t, http.MethodGet, ts.URL+"/v1/models", "", "", "good")
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusServiceUnavailable {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if statuses[200] != 5 || statuses[503] != 15 || retry == "" {
		t.Errorf("statuses %v (Retry-After %q), want 5 served and 15 shed", statuses, retry)
	}
	if n := ck.n.Load(); n != 5 {
		t.Errorf("%d key lookups, want 5: shed requests must not reach the key store", n)
	}
	if got := testutil.ToFloat64(m.shed); got != 15 {
		t.Errorf("warden_shed_total %v, want 15", got)
	}
	if got := refusedIPs.Load(); got != 15 {
		t.Errorf("%d shed requests reached the aggregated audit of refused attempts, want 15", got)
	}
	clock.Advance(time.Second)
	if resp, _ := send(t, http.MethodGet, ts.URL+"/v1/models", "", "", "good"); resp.StatusCode != http.StatusOK {
		t.Errorf("after a second: %d", resp.StatusCode)
	}
}

func TestAuthFailBan(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	ck := &countingKeys{}
	// The client is a LAN host behind a trusted proxy on this machine: this
	// machine's own (loopback) clients are never banned.
	ts := newTestServer(t, &fakeBackend{}, Config{Keys: ck, AuthFailLimit: 3, AuthBan: 10 * time.Minute, Now: clock.Now, TrustedProxies: []string{"127.0.0.1"}})
	getFrom := func(ip, key string) (int, string) { return modelsFrom(t, ts.URL, ip, key) }
	get := func(key string) (int, string) { return getFrom("192.0.2.7", key) }
	for i := range 3 {
		if code, _ := get("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	code, body := get("wrong")
	if code != http.StatusTooManyRequests || !strings.Contains(body, "too_many_failed_authentications") {
		t.Errorf("past the limit: %d %s, want 429", code, body)
	}
	if n := ck.n.Load(); n != 3 {
		t.Errorf("%d key lookups, want 3: refused addresses are not looked up", n)
	}
	// Keeping on through the 429s earns the cooling-off ban, good key or not.
	for range 2 {
		get("wrong")
	}
	if code, body := get("good"); code != http.StatusForbidden || !strings.Contains(body, "ip_banned") {
		t.Errorf("banned address with a good key: %d %s", code, body)
	}
	if code, _ := getFrom("", "good"); code != http.StatusOK {
		t.Errorf("a loopback client while another address is banned: %d", code)
	}
	for range 10 {
		getFrom("", "wrong")
	}
	if code, _ := getFrom("", "good"); code != http.StatusOK {
		t.Errorf("a loopback client after many failures: %d, want it never banned", code)
	}
	clock.Advance(5 * time.Minute)
	if code, _ := get("good"); code != http.StatusForbidden {
		t.Errorf("within the ban: %d", code)
	}
	clock.Advance(6 * time.Minute)
	if code, _ := get("good"); code != http.StatusOK {
		t.Errorf("after the ban: %d", code)
	}
}

func TestBanListBounded(t *testing.T) {
	b := newBanList(3, time.Minute)
	now := storetest.T0
	for i := range maxBanned + 100 {
		b.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if len(b.addrs) > maxBanned {
		t.Errorf("%d addresses remembered, want at most %d", len(b.addrs), maxBanned)
	}
}

func TestCORS(t *testing.T) {
	ts := newTestServer(t, &fakeBackend{}, Config{CORSOrigins: []string{"https://ui.lan"}})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, ts.URL+"/v1/chat/completions", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("https://ui.lan")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://ui.lan" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight from a listed origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp = preflight("https://evil.example")
	if resp.StatusCode == http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/models", nil)
	req.Header.Set("Origin", "https://ui.lan")
	req.Header.Set("Authorization", "Bearer good")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "https://ui.lan" {
		t.Errorf("request from a listed origin: %d %v", r.StatusCode, r.Header)
	}
	// Without configured origins there are no CORS headers.
	plain := newTestServer(t, &fakeBackend{}, Config{})
	req, _ = http.NewRequest(http.MethodGet, plain.URL+"/v1/models", nil)
	req.Header.Set("Origin", "https://ui.lan")
	req.Header.Set("Authorization", "Bearer good")
	r, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header without configured origins: %v", r.Header)
	}
}

func TestSecurityHeadersOnErrors(t *testing.T) {
	ts := newTestServer(t, &fakeBackend{}, Config{})
	for _, path := range []string{"/nosuch", "/v1/models"} {
		resp, _ := send(t, http.MethodGet, ts.URL+path, "", "", "") // 404, 401
		for h, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s (%d): %s = %q, want %q", path, resp.StatusCode, h, got, want)
			}
		}
	}
}

func TestBanSurvivesAddressFlood(t *testing.T) {
	b := newBanList(1, time.Hour)
	now := storetest.T0
	victim := netip.MustParseAddr("192.0.2.7")
	b.failed(victim, now)
	b.refused(victim, now) // the 429 that, past the limit again, bans it
	if err := b.refused(victim, now); err == nil {
		t.Fatal("not banned")
	}
	for i := range 2 * maxBanned {
		b.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if err := b.refused(victim, now); err != errIPBanned {
		t.Errorf("after a flood of other addresses the ban is %v, want it still in force", err)
	}
}

// TestAuthFailBanBehindSameHostProxy: behind a proxy on this machine that
// server.trusted_proxies does not name, every client's peer is loopback;
// the ban judges each by the address the proxy appended last, so one
// client failing is banned while another behind the same proxy, and this
// machine's own clients, are not. The untrusted header is used for
// nothing else, and a warning says the proxy should be trusted.
func TestAuthFailBanBehindSameHostProxy(t *testing.T) {
	clock := storetest.NewClock(storetest.T0)
	var logs testlog.Buffer
	ts := newTestServer(t, &fakeBackend{}, Config{Keys: &countingKeys{}, AuthFailLimit: 3, AuthBan: 10 * time.Minute, Now: clock.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	getFrom := func(xff, key string) int {
		code, _ := modelsFrom(t, ts.URL, xff, key)
		return code
	}
	// The attacker puts an address of its own first; the proxy appends
	// the one it saw.
	attacker := "198.51.100.1, 192.0.2.7"
	for range 6 {
		getFrom(attacker, "wrong")
	}
	if code := getFrom("203.0.113.9, 192.0.2.7", "good"); code != http.StatusForbidden {
		t.Errorf("the failing client, whatever it puts first: %d, want 403 banned", code)
	}
	if code := getFrom("192.0.2.8", "good"); code != http.StatusOK {
		t.Errorf("another client behind the same proxy: %d, want 200", code)
	}
	if code := getFrom("", "good"); code != http.StatusOK {
		t.Errorf("this machine's own client: %d, want 200", code)
	}
	if !strings.Contains(logs.String(), "trusted_proxies does not name it") {
		t.Errorf("no warning about the untrusted proxy:\n%s", logs.String())
	}
}

// modelsFrom GETs /v1/models with key, sending xff as X-Forwarded-For
// when set, and returns the status and body.
func modelsFrom(t *testing.T, base, xff, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
