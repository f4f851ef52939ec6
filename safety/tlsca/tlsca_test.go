package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/tlsca/tlscatest"
)

func initCA(t *testing.T, hosts ...string) (Options, Files) {
	t.Helper()
	o := Options{Dir: filepath.Join(t.TempDir(), "tls"), Hosts: hosts}
	f, err := Init(o)
	if err != nil {
		t.Fatal(err)
	}
	return o, f
}

func TestInitIssuesAVerifiableCertificate(t *testing.T) {
	o, f := initCA(t, "warden.lan", "localhost", "127.0.0.1", "192.0.2.7")
	for name, want := range map[string]os.FileMode{"": 0o700, CAKeyFile: 0o600, ServerKeyFile: 0o600, CAFile: 0o644, ServerFile: 0o644} {
		fi, err := os.Stat(filepath.Join(o.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", filepath.Join(o.Dir, name), got, want)
		}
	}
	ca, cert := tlscatest.Leaf(t, f.CA), tlscatest.Leaf(t, f.Cert)
	if !ca.IsCA || cert.IsCA {
		t.Errorf("IsCA: ca %v, server %v", ca.IsCA, cert.IsCA)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, h := range []string{"warden.lan", "localhost", "127.0.0.1", "192.0.2.7"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
			t.Errorf("verify for %s: %v", h, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.lan"}); err == nil {
		t.Error("the certificate verifies for a name it was not issued for")
	}
	if _, err := Init(o); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
}

func TestRenewKeepsTheCA(t *testing.T) {
	o, f := initCA(t, "localhost")
	before := tlscatest.Leaf(t, f.Cert)
	o.Hosts = []string{"localhost", "warden.lan"}
	f2, err := Renew(o)
	if err != nil {
		t.Fatal(err)
	}
	after := tlscatest.Leaf(t, f2.Cert)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("renew kept the serial number")
	}
	pool := x509.NewCertPool()
	pool.AddCert(tlscatest.Leaf(t, f.CA))
	if _, err := after.Verify(x509.VerifyOptions{Roots: pool, DNSName: "warden.lan"}); err != nil {
		t.Errorf("the renewed certificate does not verify under the same CA: %v", err)
	}
	if _, err := Renew(Options{Dir: t.TempDir(), Hosts: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "tls init") {
		t.Errorf("renew without a CA: %v", err)
	}
}

func TestSourceRefusesBadPairs(t *testing.T) {
	o, f := initCA(t, "localhost")
	other := Options{Dir: filepath.Join(t.TempDir(), "tls"), Hosts: []string{"localhost"}}
	g, err := Init(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSource(f.Cert, g.Key); err == nil {
		t.Error("a certificate with another key's file was accepted")
	}
	if _, err := NewSource(f.Cert, filepath.Join(o.Dir, "missing.pem")); err == nil {
		t.Error("a missing key file was accepted")
	}
	// An expired certificate is refused with the fix named.
	o.Now = func() time.Time { return time.Now().AddDate(-2, 0, 0) }
	o.Days = 30
	if _, err := Renew(o); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSource(f.Cert, f.Key); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "renew") {
		t.Errorf("expired certificate: %v", err)
	}
	// A CA file with no certificates.
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(g.Cert, g.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ServerConfig(src, "1.3", empty); err == nil {
		t.Error("a client CA file without certificates was accepted")
	}
	if _, err := ServerConfig(src, "1.1", ""); err == nil {
		t.Error("TLS 1.1 was accepted as the minimum")
	}
}

func TestSourceReloads(t *testing.T) {
	o, f := initCA(t, "localhost")
	src, err := NewSource(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	src.Now = func() time.Time { return now }
	var reloads []error
	src.OnReload = func(_ time.Time, err error) { reloads = append(reloads, err) }
	cfg, err := ServerConfig(src, "1.3", "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = cfg
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(tlscatest.Leaf(t, f.CA))

	first := tlscatest.ServedSerial(t, addr, pool)
	if _, err := Renew(o); err != nil {
		t.Fatal(err)
	}
	// Within CheckEvery the files are not looked at.
	if got := tlscatest.ServedSerial(t, addr, pool); got != first {
		t.Errorf("the certificate changed before the check interval")
	}
	now = now.Add(2 * time.Second)
	second := tlscatest.ServedSerial(t, addr, pool)
	if second == first {
		t.Fatal("a changed certificate file was not picked up")
	}
	if second != tlscatest.Leaf(t, f.Cert).SerialNumber.String() {
		t.Errorf("served %s, the file holds %s", second, tlscatest.Leaf(t, f.Cert).SerialNumber)
	}

	// A broken file keeps the certificate in force.
	if err := os.WriteFile(f.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil {
		t.Error("a broken certificate file reloaded")
	}
	if got := tlscatest.ServedSerial(t, addr, pool); got != second {
		t.Errorf("after a failed reload the server presents %s, want the old %s", got, second)
	}
	if len(reloads) != 2 || reloads[0] != nil || reloads[1] == nil {
		t.Errorf("reload outcomes %v", reloads)
	}
}

func TestTLSVersionsAndClientCertificates(t *testing.T) {
	_, f := initCA(t, "localhost")
	src, err := NewSource(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(src, "1.3", f.CA)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(tlscatest.Leaf(t, f.CA))
	dial := func(c *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), c)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	if err := dial(&tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("TLS 1.2 client against a 1.3 minimum: %v", err)
	}
	if err := dial(&tls.Config{RootCAs: pool, ServerName: "localhost"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without a certificate: %v, want a certificate error", err)
	}
}
