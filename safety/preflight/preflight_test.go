package preflight

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store/storetest"
)

var t0 = storetest.T0

// loopbackAsLAN stands in for this host's LAN addresses: the servers the
// tests start listen on 127.0.0.1.
func loopbackAsLAN() ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func noLAN() ([]netip.Addr, error) { return nil, nil }

func port(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

type tc struct {
	name string
	env  func(t *testing.T) *Env
	want Status
	// in is a substring the reason must hold.
	in string
}

func runTable(t *testing.T, fn func(context.Context, *Env) Result, cases []tc) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.env(t)
			if e.Now == nil {
				e.Now = func() time.Time { return t0 }
			}
			got := fn(t.Context(), e)
			if got.Status != c.want {
				t.Fatalf("status %s (%q), want %s", got.Status, got.Reason, c.want)
			}
			if !strings.Contains(got.Reason, c.in) {
				t.Errorf("reason %q does not mention %q", got.Reason, c.in)
			}
			if got.Status != Pass && got.Reason == "" {
				t.Error("a warn or fail without a reason")
			}
			if got.Status == Fail && got.Fix == "" {
				t.Errorf("a fail without a fix: %q", got.Reason)
			}
		})
	}
}

func env(e Env) func(*testing.T) *Env { return func(*testing.T) *Env { return &e } }

func TestListen(t *testing.T) {
	runTable(t, checkListen, []tc{
		{"loopback", env(Env{Listen: "127.0.0.1:8080"}), Pass, "loopback"},
		{"LAN with TLS and allow", env(Env{Listen: "0.0.0.0:8443", TLSCertFile: "/x.pem", Allow: []string{"192.168.1.0/24"}}), Pass, "TLS"},
		{"LAN with TLS, no allow", env(Env{Listen: "0.0.0.0:8443", TLSCertFile: "/x.pem"}), Fail, "server.allow is empty"},
		{"LAN plaintext", env(Env{Listen: "0.0.0.0:8080"}), Fail, "without TLS"},
	})
}

func TestProxy(t *testing.T) {
	runTable(t, checkProxy, []tc{
		{"off", env(Env{}), Pass, "off"},
		{"behind trusted proxy", env(Env{InsecurePlaintext: true, TrustedProxies: []string{"127.0.0.1"}}), Pass, "127.0.0.1"},
		{"no trusted proxies", env(Env{InsecurePlaintext: true}), Fail, "trusted_proxies"},
	})
}

func TestBackendExposure(t *testing.T) {
	exposed := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(exposed.Close)
	runTable(t, checkBackend, []tc{
		{"netns", env(Env{Isolation: "netns", LocalAddrs: noLAN}), Pass, "namespace"},
		{"loopback port", env(Env{Isolation: "loopback", LocalAddrs: noLAN}), Warn, "other local users"},
		{"port closed on the LAN", func(t *testing.T) *Env {
			return &Env{Isolation: "netns", BackendPort: closedPort(t), LocalAddrs: loopbackAsLAN}
		}, Pass, "namespace"},
		{"port answers on the LAN", env(Env{Isolation: "loopback", BackendPort: port(t, exposed.URL), LocalAddrs: loopbackAsLAN}), Fail, "answers on 127.0.0.1"},
	})
}

func TestOtherModelServers(t *testing.T) {
	ollama := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/version" {
			w.Write([]byte(`{"version":"0.17.4"}`))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(ollama.Close)
	other := httptest.NewServer(http.NotFoundHandler()) // a web server, not a model server
	t.Cleanup(other.Close)
	runTable(t, checkOtherModelServers, []tc{
		{"none answers", func(t *testing.T) *Env {
			return &Env{LocalAddrs: loopbackAsLAN, ModelPorts: []int{closedPort(t), port(t, other.URL)}}
		}, Pass, "no model server"},
		{"no LAN address", env(Env{LocalAddrs: noLAN}), Pass, "no non-loopback"},
		{"an Ollama answers", env(Env{LocalAddrs: loopbackAsLAN, ModelPorts: []int{port(t, ollama.URL)}}), Fail, "127.0.0.1:" + strconv.Itoa(port(t, ollama.URL))},
	})
}

func TestSinks(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) }))
	t.Cleanup(hook.Close)
	syslog, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syslog.Close() })
	// A plain listener answers the TCP connect and nothing else; a TLS
	// server completes the handshake against its CA file.
	go func() {
		for {
			c, err := syslog.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	tlsAddr := tlsSrv.Listener.Addr().String()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	runTable(t, checkSinks, []tc{
		{"none", env(Env{}), Fail, "no [[audit.sink]]"},
		{"webhook, syslog and syslog over TLS reachable", env(Env{Sinks: []Sink{
			{Name: "hook", Type: "webhook", URL: hook.URL + "/in?token=secret"},
			{Name: "siem", Type: "syslog", Network: "tcp", Address: syslog.Addr().String()},
			{Name: "siem-tls", Type: "syslog", Network: "tls", Address: tlsAddr, CAFile: caFile},
		}}), Pass, "3 audit sinks"},
		{"TLS sink that is not TLS", env(Env{Sinks: []Sink{
			{Name: "plain", Type: "syslog", Network: "tls", Address: syslog.Addr().String(), CAFile: caFile},
		}}), Fail, "plain (TLS"},
		{"TLS sink with an untrusted certificate", env(Env{Sinks: []Sink{
			{Name: "untrusted", Type: "syslog", Network: "tls", Address: tlsAddr},
		}}), Fail, "untrusted (TLS"},
		{"syslog down", func(t *testing.T) *Env {
			return &Env{Sinks: []Sink{{Name: "siem", Type: "syslog", Network: "tcp", Address: "127.0.0.1:" + strconv.Itoa(closedPort(t))}}}
		}, Fail, "siem"},
		{"webhook down", func(t *testing.T) *Env {
			return &Env{Sinks: []Sink{{Name: "hook", Type: "webhook", URL: "http://127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/in"}}}
		}, Fail, "hook"},
		{"udp", env(Env{Sinks: []Sink{{Name: "u", Type: "syslog", Network: "udp", Address: "127.0.0.1:514"}}}), Warn, "UDP"},
	})
}

func TestWebhookFailureHidesToken(t *testing.T) {
	e := &Env{Sinks: []Sink{{Name: "hook", Type: "webhook", URL: "http://user:pw@127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/in"}}}
	r := checkSinks(t.Context(), e)
	if r.Status != Fail || strings.Contains(r.Reason, "pw@") {
		t.Fatalf("got %s %q: want a fail without the URL's password", r.Status, r.Reason)
	}
}

func TestOutboxLag(t *testing.T) {
	fixture := func(age time.Duration) func(t *testing.T) *Env {
		return func(t *testing.T) *Env {
			db := storetest.Open(t)
			ctx := t.Context()
			if _, err := db.ExecContext(ctx, `INSERT INTO outbox_cursors(sink, delivered) VALUES ('siem', 0)`); err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.EnqueueTx(ctx, tx, outbox.Message{Topic: outbox.TopicAudit, Body: []byte(`{}`), Time: t0.Add(-age)}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			return &Env{DB: db, MaxOutboxLag: 5 * time.Minute}
		}
	}
	runTable(t, checkOutboxLag, []tc{
		{"caught up", fixture(time.Minute), Pass, "1 sinks"},
		{"behind", fixture(time.Hour), Fail, "siem: 1 messages"},
	})
}

func TestChain(t *testing.T) {
	fixture := func(tamper bool, full bool) func(t *testing.T) *Env {
		return func(t *testing.T) *Env {
			dir := t.TempDir()
			db := storetest.OpenDir(t, dir)
			ctx := t.Context()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var recs []audit.Record
			for i := range 5 {
				recs = append(recs, audit.Record{Time: t0, Kind: audit.KindCompletion, RequestID: "r" + strconv.Itoa(i), Status: 200})
			}
			if _, err := audit.AppendTx(ctx, tx, recs...); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if tamper {
				// The triggers forbid updates: an attacker with the file drops them.
				if _, err := db.ExecContext(ctx, `DROP TRIGGER audit_records_no_update`); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, `UPDATE audit_records SET status = 500 WHERE seq = 3`); err != nil {
					t.Fatal(err)
				}
			}
			return &Env{DB: db, DataDir: dir, Full: full}
		}
	}
	runTable(t, checkChain, []tc{
		{"tail intact", fixture(false, false), Pass, "tail"},
		{"whole intact", fixture(false, true), Pass, "whole chain"},
		{"tail tampered", fixture(true, false), Fail, "seq 3"},
		{"whole tampered", fixture(true, true), Fail, "seq 3"},
	})
}

func TestFailOpen(t *testing.T) {
	runTable(t, checkFailOpen, []tc{
		{"off", env(Env{}), Pass, "off"},
		{"on", env(Env{FailOpen: true}), Fail, "fail_open is on"},
	})
}

// keyEnv makes a database holding the keys make creates at clock times.
func keyEnv(make func(ctx context.Context, m *keys.Manager, clock *storetest.Clock) error) func(*testing.T) *Env {
	return func(t *testing.T) *Env {
		db := storetest.Open(t)
		clock := storetest.NewClock(t0.Add(-365 * 24 * time.Hour))
		if err := make(t.Context(), &keys.Manager{DB: db, Now: clock.Now}, clock); err != nil {
			t.Fatal(err)
		}
		return &Env{DB: db, RotationMaxAge: 90 * 24 * time.Hour}
	}
}

func create(ctx context.Context, m *keys.Manager, s keys.Spec) error {
	_, _, err := m.Create(ctx, "test", s)
	return err
}

func TestKeys(t *testing.T) {
	day := 24 * time.Hour
	fresh := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		c.Set(t0.Add(-day))
		if err := create(ctx, m, keys.Spec{Name: "app", Models: []string{"llama3*"}}); err != nil {
			return err
		}
		return create(ctx, m, keys.Spec{Name: "ops", Scopes: []keys.Scope{keys.ScopeAdmin}, Expires: 30 * day})
	})
	old := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		return create(ctx, m, keys.Spec{Name: "stale", Models: []string{"x"}})
	})
	rotated := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		k, _, err := m.Create(ctx, "test", keys.Spec{Name: "old-but-rotated", Models: []string{"x"}})
		if err != nil {
			return err
		}
		c.Set(t0.Add(-day))
		_, _, err = m.Rotate(ctx, "test", k.ID, 0)
		return err
	})
	revoked := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		k, _, err := m.Create(ctx, "test", keys.Spec{Name: "gone"})
		if err != nil {
			return err
		}
		return m.Revoke(ctx, "test", k.ID)
	})
	adminForever := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		c.Set(t0.Add(-day))
		return create(ctx, m, keys.Spec{Name: "root", Scopes: []keys.Scope{keys.ScopeAdmin}})
	})
	everyModel := keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
		c.Set(t0.Add(-day))
		return create(ctx, m, keys.Spec{Name: "wide"})
	})
	t.Run("rotation", func(t *testing.T) {
		runTable(t, checkRotation, []tc{
			{"fresh", fresh, Pass, "2 keys"},
			{"rotated", rotated, Pass, "1 keys"},
			{"revoked old key ignored", revoked, Pass, "0 keys"},
			{"past max age", old, Fail, "stale"},
			{"no max age", env(Env{}), Warn, "rotation_max_age is 0"},
		})
	})
	t.Run("admin expiry", func(t *testing.T) {
		runTable(t, checkAdminExpiry, []tc{
			{"expires", fresh, Pass, "every admin key"},
			{"never", adminForever, Warn, "root"},
		})
	})
	t.Run("model restriction", func(t *testing.T) {
		runTable(t, checkModelRestriction, []tc{
			{"restricted", fresh, Pass, "named models"},
			{"every model", everyModel, Warn, "wide"},
		})
	})
	delegate := func(l keys.Limits) func(*testing.T) *Env {
		return keyEnv(func(ctx context.Context, m *keys.Manager, c *storetest.Clock) error {
			return create(ctx, m, keys.Spec{Name: "webui", Scopes: []keys.Scope{keys.ScopeChat, keys.ScopeDelegate}, Limits: l})
		})
	}
	withDefaults := func(t *testing.T) *Env {
		e := delegate(keys.Limits{})(t)
		e.UserLimits = keys.Limits{UserTokensPerDay: 10000}
		return e
	}
	t.Run("delegate user limits", func(t *testing.T) {
		runTable(t, checkDelegateUserLimits, []tc{
			{"no delegate keys", fresh, Pass, "no delegate keys"},
			{"per-user limits on the key", delegate(keys.Limits{UserRPM: 5}), Pass, "1 delegate keys"},
			{"per-user defaults", withDefaults, Pass, "1 delegate keys"},
			{"none", delegate(keys.Limits{TokensPerDay: 1000}), Warn, "webui"},
		})
	})
	t.Run("unused", func(t *testing.T) {
		runTable(t, checkUnused, []tc{
			{"recent", fresh, Pass, "90 days"},
			{"unused for a year", old, Warn, "stale"},
		})
	})
}

func TestDataDir(t *testing.T) {
	uid := os.Geteuid()
	dirWith := func(dirMode, fileMode os.FileMode, name string) func(*testing.T) *Env {
		return func(t *testing.T) *Env {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, name), fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "models", "blob"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, dirMode); err != nil {
				t.Fatal(err)
			}
			return &Env{DataDir: dir, EUID: uid, SkipDirs: []string{filepath.Join(dir, "models")}}
		}
	}
	runTable(t, checkDataDir, []tc{
		{"private", dirWith(0o700, 0o600, "warden.db"), Pass, "private"},
		{"netns traverse bit", dirWith(0o710, 0o600, "warden.db"), Pass, "private"},
		{"public certificate", dirWith(0o700, 0o644, "ca.pem"), Pass, "private"},
		{"open dir", dirWith(0o755, 0o600, "warden.db"), Fail, "rwxr-xr-x"},
		{"open file", dirWith(0o700, 0o644, "warden.db"), Fail, "warden.db is -rw-r--r--"},
		{"open key", dirWith(0o700, 0o644, "server-key.pem"), Fail, "server-key.pem"},
		{"other owner", func(t *testing.T) *Env {
			e := dirWith(0o700, 0o600, "warden.db")(t)
			e.EUID = uid + 1
			return e
		}, Fail, "owned by uid"},
		{"missing", env(Env{DataDir: "/nonexistent/warden"}), Fail, "no such file"},
	})
}

func TestUser(t *testing.T) {
	runTable(t, checkUser, []tc{
		{"unprivileged", env(Env{EUID: 1000}), Pass, "uid 1000"},
		{"root", env(Env{EUID: 0}), Warn, "isolated"},
	})
}

// cgroupFixture writes a /proc/<pid>/cgroup file and a cgroup tree.
func cgroupFixture(procLine string, files map[string]string) func(*testing.T) *Env {
	return func(t *testing.T) *Env {
		proc, root := t.TempDir(), t.TempDir()
		write := func(p, s string) {
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(filepath.Join(proc, "42", "cgroup"), procLine)
		for p, s := range files {
			write(filepath.Join(root, p), s)
		}
		return &Env{BackendPID: 42, ProcRoot: proc, CgroupRoot: root}
	}
}

func TestBackendLimits(t *testing.T) {
	runTable(t, checkBackendLimits, []tc{
		{"v2 limited", cgroupFixture("0::/system.slice/warden.service\n", map[string]string{
			"system.slice/warden.service/memory.max": "8589934592\n",
			"system.slice/warden.service/cpu.max":    "200000 100000\n",
		}), Pass, "memory 8589934592 bytes, cpu 200000 100000"},
		{"v2 limit on the parent", cgroupFixture("0::/system.slice/warden.service\n", map[string]string{
			"system.slice/warden.service/memory.max": "max\n",
			"system.slice/memory.max":                "1073741824\n",
			"system.slice/warden.service/cpu.max":    "100000 100000\n",
		}), Pass, "memory 1073741824 bytes"},
		{"v2 unlimited", cgroupFixture("0::/user.slice\n", map[string]string{
			"user.slice/memory.max": "max\n",
			"user.slice/cpu.max":    "max 100000\n",
		}), Warn, "memory unlimited, cpu unlimited"},
		{"v1 limited", cgroupFixture("4:memory:/box\n2:cpu,cpuacct:/box\n0::/\n", map[string]string{
			"memory/box/memory.limit_in_bytes":  "4294967296\n",
			"cpu,cpuacct/box/cpu.cfs_quota_us":  "50000\n",
			"cpu,cpuacct/box/cpu.cfs_period_us": "100000\n",
		}), Pass, "v1 /box: memory 4294967296 bytes, cpu 50000 100000"},
		{"v1 memory only", cgroupFixture("4:memory:/box\n1:cpu:/\n", map[string]string{
			"memory/box/memory.limit_in_bytes": "4294967296\n",
			"cpu/cpu.cfs_quota_us":             "-1\n",
		}), Warn, "cpu unlimited"},
		{"unreadable", env(Env{BackendPID: 42, ProcRoot: "/nonexistent"}), Warn, "cannot read"},
	})
}

// The host's own cgroup is read, never written: whatever it finds is a
// pass or a warn with what was found.
func TestBackendLimitsOnThisHost(t *testing.T) {
	r := checkBackendLimits(t.Context(), &Env{})
	if r.Status == Fail || !strings.Contains(r.Reason, "this process") {
		t.Fatalf("got %s %q", r.Status, r.Reason)
	}
	t.Logf("%s: %s", r.Status, r.Reason)
}

func writeCert(t *testing.T, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warden"}, NotBefore: t0.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "server.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSCert(t *testing.T) {
	runTable(t, checkTLSCert, []tc{
		{"off on loopback", env(Env{Listen: "127.0.0.1:8080"}), Pass, "loopback"},
		{"valid a year", func(t *testing.T) *Env {
			return &Env{Listen: "0.0.0.0:8443", TLSCertFile: writeCert(t, t0.Add(365*24*time.Hour))}
		}, Pass, "valid until"},
		{"expires in a week", func(t *testing.T) *Env {
			return &Env{Listen: "0.0.0.0:8443", TLSCertFile: writeCert(t, t0.Add(7*24*time.Hour))}
		}, Fail, "under 14 days"},
		{"unreadable", env(Env{Listen: "0.0.0.0:8443", TLSCertFile: "/nonexistent.pem"}), Fail, "cert_file"},
		{"not PEM", func(t *testing.T) *Env {
			p := filepath.Join(t.TempDir(), "x.pem")
			os.WriteFile(p, []byte("hello"), 0o600)
			return &Env{Listen: "0.0.0.0:8443", TLSCertFile: p}
		}, Fail, "no PEM"},
	})
}

func TestClock(t *testing.T) {
	ntp := func(synced, reported bool) func(context.Context) (bool, bool) {
		return func(context.Context) (bool, bool) { return synced, reported }
	}
	runTable(t, checkClock, []tc{
		{"synced", env(Env{NTPSynchronized: ntp(true, true)}), Pass, "synchronised"},
		{"not synced", env(Env{NTPSynchronized: ntp(false, true)}), Fail, "not synchronised"},
		{"not reported", env(Env{NTPSynchronized: ntp(false, false)}), Warn, "not reported"},
	})
}

// Run names every result and is OK only without a fail.
func TestRun(t *testing.T) {
	e := &Env{Listen: "127.0.0.1:8080", LocalAddrs: noLAN, Isolation: "netns", Now: func() time.Time { return t0 },
		NTPSynchronized: func(context.Context) (bool, bool) { return true, true }}
	rep := Run(t.Context(), e)
	if len(rep.Checks) != len(Checks()) {
		t.Fatalf("%d results for %d checks", len(rep.Checks), len(Checks()))
	}
	for _, c := range rep.Checks {
		if c.Name == "" || c.Status == "" {
			t.Errorf("unnamed or statusless result %+v", c)
		}
	}
	// No sinks and no data dir: failures.
	if rep.OK || len(rep.Failed()) == 0 {
		t.Fatalf("OK=%v with failed %v", rep.OK, rep.Failed())
	}
	if rep.Failed()[0].Name != "logs.sinks" {
		t.Errorf("first failure %q, want logs.sinks", rep.Failed()[0].Name)
	}
}
