package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-llm/warden/safety/tlsca"
)

// startTLS reads the listener's certificate (nil config when TLS is off)
// and, until ctx ends, re-reads it on SIGHUP; changed files are also
// picked up at the next handshake.
func startTLS(ctx context.Context, tc TLSConfig, log *slog.Logger) (*tls.Config, error) {
	if !tc.On() {
		return nil, nil
	}
	src, err := tlsca.NewSource(tc.CertFile, tc.KeyFile)
	if err != nil {
		return nil, err
	}
	src.OnReload = func(notAfter time.Time, err error) {
		if err != nil {
			log.Error("tls certificate not reloaded: the old one stays in force", "err", err)
			return
		}
		log.Info("tls certificate reloaded", "not_after", notAfter)
	}
	conf, err := tlsca.ServerConfig(src, tc.MinVersion, tc.ClientCAFile)
	if err != nil {
		return nil, err
	}
	onHangup(ctx, func() { _ = src.Reload() }) // reported through OnReload
	return conf, nil
}

func newTLSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make a local CA and server certificates for HTTPS on the LAN",
	}
	var (
		hosts []string
		days  int
	)
	run := func(renew bool) func(*cobra.Command, []string) error {
		return func(*cobra.Command, []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			o := tlsca.Options{Dir: filepath.Join(cfg.DataDir, "tls"), Hosts: hosts, Days: days}
			if len(o.Hosts) == 0 {
				o.Hosts = tlsca.DefaultHosts()
			}
			var f tlsca.Files
			if renew {
				f, err = tlsca.Renew(o)
			} else {
				f, err = tlsca.Init(o)
			}
			if err != nil {
				return err
			}
			return printTLS(g, f, renew)
		}
	}
	hostsHelp := "names and addresses the certificate is for (default: localhost, the host name and every non-loopback address)"
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Make a CA and a server certificate in <data dir>/tls (changes no config)",
		Args:  cobra.NoArgs,
		RunE:  run(false),
	}
	renewCmd := &cobra.Command{
		Use:   "renew",
		Short: "Issue a fresh server certificate from the same CA (a running server picks it up)",
		Args:  cobra.NoArgs,
		RunE:  run(true),
	}
	for _, c := range []*cobra.Command{initCmd, renewCmd} {
		c.Flags().StringSliceVar(&hosts, "hosts", nil, hostsHelp)
		c.Flags().IntVar(&days, "days", tlsca.DefaultDays, "days the server certificate is valid")
	}
	cmd.AddCommand(initCmd, renewCmd)
	return cmd
}

func printTLS(g *globals, f tlsca.Files, renew bool) error {
	w := g.stdout
	if renew {
		_, err := fmt.Fprintf(w, "New server certificate %s for %s, valid until %s.\nA running warden serve uses it for new connections (or send it SIGHUP).\n",
			f.Cert, strings.Join(f.Hosts, ", "), f.NotAfter.Format(time.DateOnly))
		return err
	}
	_, err := fmt.Fprintf(w, `Made a local CA (%s) and a server certificate for %s, valid until %s.

Add to the config (nothing was changed):

[server]
listen = "0.0.0.0:8443"

[server.tls]
cert_file = %q
key_file  = %q

Trust the CA on each client (copy %s there):
  curl --cacert ca.pem https://HOST:8443/v1/models -H "Authorization: Bearer $KEY"
  export SSL_CERT_FILE=/path/to/ca.pem        # Python httpx/openai, Go, most OpenSSL tools
  export REQUESTS_CA_BUNDLE=/path/to/ca.pem   # Python requests
  export NODE_EXTRA_CA_CERTS=/path/to/ca.pem  # Node.js clients
`, f.CA, strings.Join(f.Hosts, ", "), f.NotAfter.Format(time.DateOnly), f.Cert, f.Key, f.CA)
	return err
}
