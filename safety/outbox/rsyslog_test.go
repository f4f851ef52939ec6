package outbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testenv"
	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

const installHint = "run scripts/install-test-deps.sh (as root) to install rsyslog, rsyslog-gnutls and openssl"

// rsyslog is a real rsyslogd receiving RFC 5425 (TLS, octet-counted)
// syslog on loopback and writing each raw message to a file.
type rsyslog struct {
	t        *testing.T
	bin      string
	dir      string
	conf     string
	addr     string
	out      string
	cmd      *exec.Cmd
	exited   chan struct{}
	certFile string
}

func lookRsyslogd(t *testing.T) string {
	t.Helper()
	testenv.NeedExternal(t, "rsyslogd and openssl")
	p, err := exec.LookPath("rsyslogd")
	if err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testenv.Missing(t, "rsyslogd ("+installHint+")", err)
	return ""
}

// newRsyslog writes a self-signed P-256 certificate and the config into a
// temp dir, checks the config with rsyslogd -N1, and picks a free port.
func newRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	r := &rsyslog{t: t, bin: lookRsyslogd(t), dir: t.TempDir()}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		testenv.Missing(t, "openssl ("+installHint+")", err)
	}
	r.certFile = filepath.Join(r.dir, "cert.pem")
	keyFile := filepath.Join(r.dir, "key.pem")
	gen := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", keyFile, "-out", r.certFile, "-days", "1", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("openssl req -x509: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(r.addr)
	work := filepath.Join(r.dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	r.out = filepath.Join(r.dir, "received.log")
	r.conf = filepath.Join(r.dir, "rsyslog.conf")
	conf := fmt.Sprintf(`global(workDirectory=%q
	defaultNetstreamDriverCAFile=%q
	defaultNetstreamDriverCertFile=%q
	defaultNetstreamDriverKeyFile=%q)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port=%q address="127.0.0.1")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file=%q template="raw")
`, work, r.certFile, r.certFile, keyFile, port, r.out)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(r.bin, "-N1", "-f", r.conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 rejects the config (is rsyslog-gnutls installed? %s): %v\n%s", installHint, err, out)
	}
	return r
}

// start runs rsyslogd in the foreground as a child and waits until its
// port accepts connections.
func (r *rsyslog) start() {
	t := r.t
	t.Helper()
	pidFile := filepath.Join(r.dir, "rsyslogd.pid")
	os.Remove(pidFile) // a killed daemon leaves it behind
	logFile, err := os.OpenFile(filepath.Join(r.dir, "rsyslogd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	r.cmd = exec.Command(r.bin, "-n", "-f", r.conf, "-i", pidFile)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rsyslogd: %v", err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(r.cmd)
	t.Cleanup(r.kill)
	testwait.For(t, "rsyslogd to accept on "+r.addr, func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
			t.Fatalf("rsyslogd exited at start:\n%s", log)
		default:
		}
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// kill stops the daemon hard (SIGKILL) and reaps it.
func (r *rsyslog) kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

var receivedN = regexp.MustCompile(`"n":(\d+)`)

// received is the set of message numbers in the output file.
func (r *rsyslog) received() map[int]bool {
	data, _ := os.ReadFile(r.out)
	seen := map[int]bool{}
	for _, m := range receivedN.FindAllSubmatch(data, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		seen[n] = true
	}
	return seen
}

func hasAll(seen map[int]bool, from, to int) bool {
	for i := from; i < to; i++ {
		if !seen[i] {
			return false
		}
	}
	return true
}

func TestRealRsyslogOverTLSAcrossRestart(t *testing.T) {
	rs := newRsyslog(t)
	rs.start()

	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	sink, err := NewSink(SinkConfig{Name: "rsyslog", Type: "syslog", Network: "tls", Address: rs.addr,
		CAFile: rs.certFile, ServerName: "localhost", Hostname: "warden-test"})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	opts := testOptions()
	opts.Batch = 10
	opts.MaxBackoff = 100 * time.Millisecond
	o := start(t, db, []Sink{sink}, opts)

	// A producer keeps committing records, a few per transaction, paced
	// by the sink while the receiver is up so the kill lands mid-stream.
	const total = 600
	var down atomic.Bool
	produced := make(chan error, 1)
	go func() {
		defer close(produced)
		ctx := context.Background()
		for i := 0; i < total; i += 5 {
			for !down.Load() {
				st, err := o.Status(ctx)
				if err != nil {
					produced <- err
					return
				}
				if st[0].Delivered >= int64(i-30) {
					break
				}
				runtime.Gosched()
			}
			if err := enqueueErr(db, TopicAudit, i, i+5); err != nil {
				produced <- err
				return
			}
			o.Notify()
		}
	}()

	testwait.For(t, "rsyslog to write the first 100 messages", func() bool { return len(rs.received()) >= 100 })
	line, _ := os.ReadFile(rs.out)
	if want := regexp.MustCompile(`(?m)^<134>1 2026-11-22T06:00:00\.000Z warden-test warden \d+ audit - \{"n":0\}$`); !want.Match(line) {
		t.Errorf("rsyslog's raw message is not the RFC 5424 one expected:\n%.300s", line)
	}

	// The receiver dies mid-stream; records keep coming.
	rs.kill()
	down.Store(true)
	if err := <-produced; err != nil {
		t.Fatalf("producer: %v", err)
	}
	testwait.For(t, "the sink to see the outage", func() bool { return status(t, o)[sink.Name()].Failures > 0 })

	rs.start()
	testwait.For(t, "the sink to recover", func() bool {
		st := status(t, o)[sink.Name()]
		return st.Failures == 0 && st.Pending == 0
	})
	testwait.For(t, "every message at least once after the restart", func() bool { return hasAll(rs.received(), 0, total) })
}
