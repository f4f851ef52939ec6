// Package tlsca holds a Warden box's TLS material: a local certificate
// authority and the server certificates it issues (`warden tls init` and
// `warden tls renew`), and the certificate source the listener serves from,
// which picks up new files without dropping connections in flight.
package tlsca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

// The files in the TLS folder (<data dir>/tls).
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// DefaultDays is how long a server certificate is valid; the CA is valid
// ten times as long.
const DefaultDays = 397

// ErrExists reports that Init found a CA already: renew from it instead.
var ErrExists = errors.New("a CA already exists")

// Options say where the files go and what the server certificate names.
type Options struct {
	Dir   string   // the TLS folder; created 0700
	Hosts []string // DNS names and IP addresses the certificate is for
	Days  int      // validity of the server certificate; 0: DefaultDays
	Now   func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) days() int {
	if o.Days > 0 {
		return o.Days
	}
	return DefaultDays
}

// Files are the paths Init and Renew wrote.
type Files struct {
	CA, Cert, Key string
	Hosts         []string
	NotAfter      time.Time
}

// Init makes a new CA (ECDSA P-256, its key 0600) and a server certificate
// from it. It refuses to replace an existing CA, whose certificate clients
// may already trust: use Renew.
func Init(o Options) (Files, error) {
	if len(o.Hosts) == 0 {
		return Files{}, errors.New("no host names for the certificate")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Files{}, err
	}
	caPath := filepath.Join(o.Dir, CAFile)
	if _, err := os.Stat(caPath); err == nil {
		return Files{}, fmt.Errorf("%w in %s: run `warden tls renew` for a new server certificate", ErrExists, o.Dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Warden local CA", Organization: []string{"Warden"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, 10*o.days()),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Files{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, err
	}
	// The key first: a CA certificate without its key could never renew.
	if err := store.CreateKeyFile(filepath.Join(o.Dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return Files{}, fmt.Errorf("write CA key: %w", err)
	}
	if err := store.WriteFileAtomic(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Files{}, fmt.Errorf("write CA certificate: %w", err)
	}
	return Renew(o)
}

// Renew issues a fresh server certificate (and key) from the folder's CA.
func Renew(o Options) (Files, error) {
	if len(o.Hosts) == 0 {
		return Files{}, errors.New("no host names for the certificate")
	}
	ca, caKey, err := loadCA(o.Dir)
	if err != nil {
		return Files{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.Hosts[0], Organization: []string{"Warden"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(0, 0, o.days()),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return Files{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, err
	}
	f := Files{
		CA:       filepath.Join(o.Dir, CAFile),
		Cert:     filepath.Join(o.Dir, ServerFile),
		Key:      filepath.Join(o.Dir, ServerKeyFile),
		Hosts:    slices.Clone(o.Hosts),
		NotAfter: tmpl.NotAfter,
	}
	// The key before the certificate: a reload that sees the new
	// certificate beside the old key fails and keeps the old pair, and the
	// next one (the certificate written) takes the new pair.
	if err := store.WriteFileAtomic(f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return Files{}, fmt.Errorf("write server key: %w", err)
	}
	if err := store.WriteFileAtomic(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Files{}, fmt.Errorf("write server certificate: %w", err)
	}
	return f, nil
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no CA in %s: run `warden tls init` first", dir)
	}
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("read CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("the CA files in %s are not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("the CA key in %s does not match its certificate", dir)
	}
	return ca, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// DefaultHosts are the names a LAN client may use for this box: localhost,
// the host name, and every non-loopback interface address.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			hosts = append(hosts, ipn.IP.String())
		}
	}
	return hosts
}
