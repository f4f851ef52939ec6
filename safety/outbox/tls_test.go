package outbox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// selfSigned writes a self-signed P-256 certificate for 127.0.0.1 and its
// key as PEM files in dir.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestSyslogTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	serverCertFile, _, serverCert := selfSigned(t, dir, "server")
	clientCertFile, clientKeyFile, clientCert := selfSigned(t, dir, "client")
	clients := x509.NewCertPool()
	clients.AddCert(clientCert.Leaf)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
		// TLS 1.2, so a refused client certificate fails the client's
		// handshake (1.3 reports it only on a later read).
		MaxVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 10)
	go tcpReceiver(ln, frames, nil)

	s, err := NewSink(SinkConfig{Name: "mtls", Type: "syslog", Address: ln.Addr().String(),
		CAFile: serverCertFile, CertFile: clientCertFile, KeyFile: clientKeyFile, Hostname: "box 1\n"})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	defer s.(*Syslog).Close()
	if err := s.Send(context.Background(), deliveries(0, 2)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	for i := range 2 {
		if got, want := <-frames, wantSyslog(i); got != want {
			t.Errorf("frame %d:\n got %q\nwant %q", i, got, want)
		}
	}

	// Without the client certificate the server refuses the handshake.
	noCert, err := NewSink(SinkConfig{Name: "anon", Type: "syslog", Address: ln.Addr().String(), CAFile: serverCertFile})
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.(*Syslog).Close()
	if err := noCert.Send(context.Background(), deliveries(0, 1)); err == nil {
		t.Errorf("Send without a client certificate succeeded, want the handshake refused")
	}
}

func TestCloseAbortsAHangingSend(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		io.Copy(io.Discard, r.Body) // so the server notices the client leave
		<-r.Context().Done()        // never answers
	}))
	defer srv.Close()
	s, err := NewSink(SinkConfig{Name: "slow", Type: "webhook", URL: srv.URL, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	o := New(db, []Sink{s}, testOptions())
	if err := o.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	enqueue(t, db, TopicAudit, 0, 1)
	o.Notify()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		t.Fatalf("Close with a send in flight: %v", err)
	}
	if st, _ := ReadStatus(context.Background(), db, t0); len(st) != 1 || st[0].Pending != 1 {
		t.Errorf("status after close = %+v, want the message still pending", st)
	}
}
