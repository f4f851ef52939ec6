package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/tlsca"
	"github.com/warden-llm/warden/safety/tlsca/tlscatest"
)

// TestE2ETLS: `warden tls init` makes a CA and a certificate; serve uses
// them; openai-go trusting the CA works; HSTS is on every response; a
// renewed certificate is picked up on SIGHUP while a stream is in flight,
// which finishes on its old connection.
func TestE2ETLS(t *testing.T) {
	ollamaBin(t)
	dataDir, err := os.MkdirTemp(tmpRoot, "data-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, dataDir, "tls", "init", "--hosts", "localhost,127.0.0.1")
	if err != nil {
		t.Fatalf("tls init: %v", err)
	}
	tlsDir := filepath.Join(dataDir, "tls")
	certFile, keyFile, caFile := filepath.Join(tlsDir, tlsca.ServerFile), filepath.Join(tlsDir, tlsca.ServerKeyFile), filepath.Join(tlsDir, tlsca.CAFile)
	for _, want := range []string{"[server.tls]", certFile, keyFile, "SSL_CERT_FILE", "--cacert"} {
		if !strings.Contains(out, want) {
			t.Errorf("tls init output lacks %q:\n%s", want, out)
		}
	}
	if _, err := runCLI(t, dataDir, "tls", "init"); err == nil {
		t.Error("a second tls init replaced the CA")
	}

	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	w := startWardenWith(t, dataDir, fmt.Sprintf("[server.tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile), hc)
	defer w.stop()
	addr := strings.TrimPrefix(w.base, "https://")

	// The SDK over TLS, with HSTS on answers and errors alike.
	c := w.client()
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("hello over TLS", 8)); err != nil {
		t.Fatalf("chat over TLS: %v", err)
	}
	for _, path := range []string{"/healthz", "/v1/nosuch"} {
		resp, err := hc.Get(w.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s: no HSTS header", path)
		}
	}
	// Plain HTTP to the TLS port gets no answer from the API.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served on the TLS listener")
		}
	}

	// A stream in flight while the certificate is renewed and SIGHUP sent.
	first := tlscatest.ServedSerial(t, addr, pool)
	stream := c.Chat.Completions.NewStreaming(ctxT(t), chatParams("a long answer", 600))
	if !stream.Next() {
		t.Fatalf("stream: %v", stream.Err())
	}
	if _, err := runCLI(t, dataDir, "tls", "renew", "--hosts", "localhost,127.0.0.1"); err != nil {
		t.Fatalf("tls renew: %v", err)
	}
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the log to report the reload", func() bool {
		return strings.Contains(w.log.String(), "tls certificate reloaded")
	})
	finish := ""
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil || finish == "" {
		t.Errorf("the stream across the reload: err %v, finish %q", err, finish)
	}
	renewed := tlscatest.ServedSerial(t, addr, pool)
	if renewed == first || renewed != tlscatest.Leaf(t, certFile).SerialNumber.String() {
		t.Errorf("after SIGHUP a new connection sees serial %s; before %s, the renewed file %s", renewed, first, tlscatest.Leaf(t, certFile).SerialNumber.String())
	}
}

// TestPlaintextRefusedOnTheLAN: a non-loopback listen address without TLS
// is refused before anything starts, naming the fix.
func TestPlaintextRefusedOnTheLAN(t *testing.T) {
	dir := t.TempDir()
	_, err := runCLI(t, dir, "serve", "--listen", "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "TLS is off") || !strings.Contains(err.Error(), "warden tls init") {
		t.Fatalf("serve on 0.0.0.0 without TLS: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "warden.db")); err == nil {
		t.Error("the refused serve opened the database")
	}
}
