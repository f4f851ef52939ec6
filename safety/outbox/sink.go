package outbox

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// SinkConfig describes one sink, as the config file's [[forward]] tables
// give it.
type SinkConfig struct {
	Name string // unique; names the sink's cursor, so renaming one starts it over
	Type string // "syslog" | "webhook"

	// syslog
	Network string // "tls" (default) | "tcp" | "udp"
	Address string // host:port

	// TLS, for syslog over tls and for https webhooks. CAFile empty means
	// the system roots; CertFile and KeyFile (together) present a client
	// certificate. ServerName defaults to Address's host.
	CAFile, CertFile, KeyFile string
	ServerName                string
	InsecureSkipVerify        bool

	// webhook
	URL     string
	Headers map[string]string // e.g. Authorization, X-Scope-OrgID
	// Secret, if set, signs each webhook body: X-Warden-Timestamp carries
	// the Unix time and X-Warden-Signature "sha256=" and the hex
	// HMAC-SHA256 of timestamp + "." + body under Secret.
	Secret []byte

	Timeout  time.Duration // dial+write (syslog) or whole request (webhook); default 10s
	AppName  string        // syslog APP-NAME; default "warden"
	Hostname string        // syslog HOSTNAME; default the machine's name
}

// ErrInvalidSink reports a SinkConfig NewSink refuses.
var ErrInvalidSink = errors.New("invalid forwarding sink")

const defaultTimeout = 10 * time.Second

// NewSink validates cfg and builds its sink. Certificate files are read
// now, so a wrong path fails at start, naming the file.
func NewSink(cfg SinkConfig) (Sink, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: a sink needs a name", ErrInvalidSink)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: sink %q: negative timeout", ErrInvalidSink, cfg.Name)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	switch cfg.Type {
	case "syslog":
		return newSyslog(cfg)
	case "webhook":
		return newWebhook(cfg)
	default:
		return nil, fmt.Errorf("%w: sink %q: type %q: want \"syslog\" or \"webhook\"", ErrInvalidSink, cfg.Name, cfg.Type)
	}
}

// hasTLSSettings reports whether cfg sets any TLS field.
func (cfg SinkConfig) hasTLSSettings() bool {
	return cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.ServerName != "" || cfg.InsecureSkipVerify
}

// TLSConfig builds the client TLS settings the sink connects with; host
// is the server's name when cfg.ServerName is empty. preflight's sink
// check handshakes with the same settings.
func (cfg SinkConfig) TLSConfig(host string) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         cfg.ServerName,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: sink %q: ca_file: %w", ErrInvalidSink, cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: sink %q: ca_file %s holds no PEM certificate", ErrInvalidSink, cfg.Name, cfg.CAFile)
		}
		c.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("%w: sink %q: cert_file and key_file go together", ErrInvalidSink, cfg.Name)
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: sink %q: client certificate %s / %s: %w", ErrInvalidSink, cfg.Name, cfg.CertFile, cfg.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// splitAddress checks a host:port address.
func splitAddress(cfg SinkConfig) (host string, err error) {
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("%w: sink %q: address %q: want host:port", ErrInvalidSink, cfg.Name, cfg.Address)
	}
	return host, nil
}

// checkURL checks a webhook URL.
func checkURL(cfg SinkConfig) (*url.URL, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold credentials: do not echo it.
		return nil, fmt.Errorf("%w: sink %q: url: want an http:// or https:// URL with a host", ErrInvalidSink, cfg.Name)
	}
	return u, nil
}
