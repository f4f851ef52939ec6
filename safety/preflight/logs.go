package preflight

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

func checkSinks(ctx context.Context, e *Env) Result {
	if len(e.Sinks) == 0 {
		return fail("no [[audit.sink]]: the audit trail lives only on this host, where whoever takes it over can delete it",
			"add an [[audit.sink]] (syslog over TLS, or a webhook) on another host; see docs/audit.md")
	}
	var bad []string
	var notes []string
	for _, s := range e.Sinks {
		switch {
		case s.Type == "webhook":
			if err := e.reachURL(ctx, s.URL); err != nil {
				bad = append(bad, fmt.Sprintf("%s (%v)", s.Name, err))
			}
		case s.Network == "udp":
			notes = append(notes, s.Name+" is UDP: delivery cannot be checked")
		default:
			c, err := e.dial(ctx, "tcp", s.Address)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s (%v)", s.Name, err))
				continue
			}
			if s.Network == "tls" {
				err = handshake(ctx, e, c, s)
			}
			c.Close()
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s (TLS: %v)", s.Name, err))
			}
		}
	}
	if len(bad) > 0 {
		return fail("audit sinks not reachable now: "+strings.Join(bad, "; "),
			"check the receiver and the network path; `warden audit status` shows the outbox waiting for it")
	}
	if len(notes) > 0 {
		return warn(strings.Join(notes, "; "), "prefer syslog over TLS (network = \"tls\")")
	}
	return pass(fmt.Sprintf("%d audit sinks reachable", len(e.Sinks)))
}

// handshake completes a TLS handshake on c with the settings the sink
// itself connects with (outbox.SinkConfig.TLSConfig).
func handshake(ctx context.Context, e *Env, c net.Conn, s Sink) error {
	host, _, _ := net.SplitHostPort(s.Address)
	conf, err := outbox.SinkConfig{Name: s.Name, CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile,
		ServerName: s.ServerName, InsecureSkipVerify: s.InsecureSkipVerify}.TLSConfig(host)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	return tls.Client(c, conf).HandshakeContext(ctx)
}

// reachURL sends a HEAD request: any HTTP answer proves the receiver is up.
func (e *Env) reachURL(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return err
	}
	resp, err := e.httpClient().Do(req)
	if err != nil {
		// The URL can hold a token: report the failure without it.
		return fmt.Errorf("no HTTP answer from %s", req.URL.Redacted())
	}
	resp.Body.Close()
	return nil
}

func checkOutboxLag(ctx context.Context, e *Env) Result {
	if e.DB == nil {
		return warn("no database to read the outbox from", "")
	}
	limit := e.MaxOutboxLag
	if limit <= 0 {
		limit = 5 * time.Minute
	}
	sts, err := outbox.ReadStatus(ctx, e.DB, e.now())
	if err != nil {
		return fail("read the outbox: "+err.Error(), "")
	}
	var late []string
	for _, s := range sts {
		if s.Lag > limit {
			late = append(late, fmt.Sprintf("%s: %d messages, oldest %s behind", s.Name, s.Pending, s.Lag.Round(time.Second)))
		}
	}
	if len(late) > 0 {
		return fail("audit sinks behind by more than "+limit.String()+": "+strings.Join(late, "; "),
			"see `warden audit status` for each sink's last error, and fix the receiver")
	}
	return pass(fmt.Sprintf("%d sinks within %s of the trail", len(sts), limit))
}

func checkChain(ctx context.Context, e *Env) Result {
	if e.DB == nil {
		return warn("no database to verify", "")
	}
	verify, what := audit.VerifyTail, "tail (after the newest checkpoint)"
	if e.Full {
		verify, what = func(ctx context.Context, db *store.DB, dir string) (audit.Report, error) {
			return audit.Verify(ctx, db, dir, nil)
		}, "whole chain"
	}
	rep, err := verify(ctx, e.DB, e.DataDir)
	if err != nil {
		return fail("verify the audit chain: "+err.Error(), "check the database file (`warden audit verify`)")
	}
	if !rep.OK() {
		return fail("the audit chain's "+what+" is broken at "+rep.Break.String(),
			"investigate with `warden audit verify`; compare with the checkpoints your sinks received")
	}
	return pass(fmt.Sprintf("the audit chain's %s verifies (%d records)", what, rep.Records))
}

func checkFailOpen(_ context.Context, e *Env) Result {
	if e.FailOpen {
		return fail("audit.fail_open is on: requests are served even when their records cannot be written",
			"set audit.fail_open = false (503 instead of unrecorded answers)")
	}
	return pass("audit.fail_open is off: no answer without its record")
}
