package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Source is the server certificate the listener presents. It is read from
// its files at start, again on Reload (SIGHUP), and when either file's
// size or modification time has changed, checked at most once per
// CheckEvery during handshakes. A reload that fails keeps the certificate
// in force. Connections already open are never touched: only new
// handshakes see a new certificate.
type Source struct {
	certFile, keyFile string
	// CheckEvery bounds how often a handshake looks at the files.
	CheckEvery time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// OnReload, if set, learns each reload's outcome (the new
	// certificate's expiry, or the error that kept the old one).
	OnReload func(notAfter time.Time, err error)

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times when read
	checked time.Time
}

// NewSource reads the pair; an unreadable, mismatched or expired pair is
// an error naming the file.
func NewSource(certFile, keyFile string) (*Source, error) {
	s := &Source{certFile: certFile, keyFile: keyFile, CheckEvery: time.Second}
	cert, stamp, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cert, s.stamp = cert, stamp
	return s, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// stampOf names the files' state; a change means a rewrite.
func (s *Source) stampOf() (string, error) {
	var stamp string
	for _, f := range []string{s.certFile, s.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

func (s *Source) load() (*tls.Certificate, string, error) {
	stamp, err := s.stampOf()
	if err != nil {
		return nil, "", fmt.Errorf("tls certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("tls certificate %s with key %s: %w", s.certFile, s.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, "", fmt.Errorf("tls certificate %s: %w", s.certFile, err)
		}
	}
	if now := s.now(); now.After(cert.Leaf.NotAfter) {
		return nil, "", fmt.Errorf("tls certificate %s expired on %s: renew it (warden tls renew)", s.certFile, cert.Leaf.NotAfter.Format(time.DateOnly))
	}
	return &cert, stamp, nil
}

// Reload reads the files again. On error the certificate in force stays.
func (s *Source) Reload() error {
	cert, stamp, err := s.load()
	s.mu.Lock()
	if err == nil {
		s.cert, s.stamp = cert, stamp
	}
	s.checked = s.now()
	s.mu.Unlock()
	if s.OnReload != nil {
		var notAfter time.Time
		if cert != nil {
			notAfter = cert.Leaf.NotAfter
		}
		s.OnReload(notAfter, err)
	}
	return err
}

// Certificate is the certificate in force.
func (s *Source) Certificate() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert
}

// GetCertificate serves tls.Config.GetCertificate, reloading first when
// the files changed since they were read.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	due := s.now().Sub(s.checked) >= s.CheckEvery
	if due {
		s.checked = s.now()
	}
	current := s.stamp
	s.mu.Unlock()
	if due {
		if stamp, err := s.stampOf(); err == nil && stamp != current {
			_ = s.Reload() // a failed reload keeps the old pair and is reported through OnReload
		}
	}
	return s.Certificate(), nil
}

// ServerConfig is the listener's TLS configuration: the source's
// certificate, TLS minVersion ("1.3" or "1.2"), and, when clientCAFile is
// set, client certificates required and verified against it.
func ServerConfig(src *Source, minVersion, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{GetCertificate: src.GetCertificate}
	switch minVersion {
	case "", "1.3":
		cfg.MinVersion = tls.VersionTLS13
	case "1.2":
		cfg.MinVersion = tls.VersionTLS12
	default:
		return nil, fmt.Errorf("server.tls.min_version must be \"1.3\" or \"1.2\", got %q", minVersion)
	}
	if clientCAFile != "" {
		b, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, errors.New("server.tls.client_ca_file: no PEM certificates in " + clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
