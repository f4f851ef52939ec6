package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
)

func newSyslogSink(t *testing.T, network, addr string) *Syslog {
	t.Helper()
	s, err := NewSink(SinkConfig{Name: "sys", Type: "syslog", Network: network, Address: addr, Hostname: "box 1\n", AppName: "warden"})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { s.(*Syslog).Close() })
	return s.(*Syslog)
}

func deliveries(from, to int) []Delivery {
	var out []Delivery
	topics := []string{TopicAudit, TopicCheckpoint, TopicAlert}
	for i := from; i < to; i++ {
		out = append(out, Delivery{int64(i + 1), Message{topics[i%3], body(i), t0.Add(time.Duration(i)*time.Second + 250*time.Millisecond)}})
	}
	return out
}

// wantSyslog is the RFC 5424 message the sink must write for deliveries(i, i+1).
func wantSyslog(i int) string {
	pri := []int{134, 133, 132}[i%3] // local0 + info / notice / warning
	topic := []string{"audit", "checkpoint", "alert"}[i%3]
	ts := t0.Add(time.Duration(i)*time.Second + 250*time.Millisecond).Format("2006-01-02T15:04:05.000Z")
	return fmt.Sprintf(`<%d>1 %s box_1_ warden %d %s - {"n":%d}`, pri, ts, os.Getpid(), topic, i)
}

// readFrames reads octet-counted frames until the stream ends.
func readFrames(r io.Reader, out chan<- string) {
	br := bufio.NewReader(r)
	for {
		lenText, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenText, " "))
		if err != nil {
			out <- "BAD LENGTH " + lenText
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		out <- string(msg)
	}
}

// tcpReceiver accepts connections on ln and sends every frame to frames.
func tcpReceiver(ln net.Listener, frames chan<- string, conns chan<- net.Conn) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if conns != nil {
			conns <- c
		}
		go readFrames(c, frames)
	}
}

func TestSyslogTCPOctetCountedRFC5424(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 100)
	go tcpReceiver(ln, frames, nil)
	s := newSyslogSink(t, "tcp", ln.Addr().String())
	if err := s.Send(context.Background(), deliveries(0, 3)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := s.Send(context.Background(), deliveries(3, 4)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	for i := range 4 {
		if got, want := <-frames, wantSyslog(i); got != want {
			t.Errorf("frame %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

func TestSyslogUDPOneDatagramPerMessage(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := newSyslogSink(t, "udp", pc.LocalAddr().String())
	if err := s.Send(context.Background(), deliveries(0, 3)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	buf := make([]byte, 70000)
	for i := range 3 {
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if got, want := string(buf[:n]), wantSyslog(i); got != want {
			t.Errorf("datagram %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

func TestSyslogTCPReplaysAfterReceiverRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	frames := make(chan string, 100)
	conns := make(chan net.Conn, 10)
	go tcpReceiver(ln, frames, conns)
	s := newSyslogSink(t, "tcp", addr)
	ctx := context.Background()
	if err := s.Send(ctx, deliveries(0, 3)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	for range 3 {
		<-frames
	}

	// The receiver goes away; the sink notices the closed connection.
	ln.Close()
	(<-conns).Close()
	testwait.For(t, "the sink to see the connection end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.isDead()
	})
	err = s.Send(ctx, deliveries(3, 5))
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("Send with the receiver down = %v, want a dial error", err)
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	defer ln2.Close()
	go tcpReceiver(ln2, frames, nil)
	if err := s.Send(ctx, deliveries(3, 5)); err != nil {
		t.Fatalf("Send after restart: %v", err)
	}
	// The window written on the lost connection comes first, then the batch.
	for i := range 5 {
		if got, want := <-frames, wantSyslog(i); got != want {
			t.Errorf("frame %d after restart:\n got %q\nwant %q", i, got, want)
		}
	}
}

func TestNewSinkValidates(t *testing.T) {
	for name, cfg := range map[string]SinkConfig{
		"no name":          {Type: "webhook", URL: "http://x"},
		"unknown type":     {Name: "a", Type: "kafka"},
		"syslog no addr":   {Name: "a", Type: "syslog"},
		"syslog bad net":   {Name: "a", Type: "syslog", Network: "sctp", Address: "h:514"},
		"tcp with tls":     {Name: "a", Type: "syslog", Network: "tcp", Address: "h:514", CAFile: "ca.pem"},
		"missing ca file":  {Name: "a", Type: "syslog", Address: "h:6514", CAFile: "/nonexistent/ca.pem"},
		"cert without key": {Name: "a", Type: "syslog", Address: "h:6514", CertFile: "c.pem"},
		"syslog with url":  {Name: "a", Type: "syslog", Address: "h:514", URL: "http://x"},
		"webhook no url":   {Name: "a", Type: "webhook"},
		"webhook ftp":      {Name: "a", Type: "webhook", URL: "ftp://x/y"},
		"webhook addr":     {Name: "a", Type: "webhook", URL: "http://x", Address: "h:1"},
		"http with tls":    {Name: "a", Type: "webhook", URL: "http://x", CAFile: "ca.pem"},
		"negative timeout": {Name: "a", Type: "webhook", URL: "http://x", Timeout: -time.Second},
	} {
		if _, err := NewSink(cfg); !errors.Is(err, ErrInvalidSink) {
			t.Errorf("%s: err = %v, want ErrInvalidSink", name, err)
		}
	}
	if _, err := NewSink(SinkConfig{Name: "a", Type: "webhook", URL: "https://user:secret@x/"}); err != nil {
		t.Errorf("valid webhook: %v", err)
	}
	_, err := NewSink(SinkConfig{Name: "a", Type: "webhook", URL: "ftp://user:secret@x/"})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad url error = %v, want one that does not echo credentials", err)
	}
}

func TestSyslogUDPCutsOversizedMessages(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := newSyslogSink(t, "udp", pc.LocalAddr().String())
	big := Delivery{1, Message{TopicAudit, []byte(`"` + strings.Repeat("x", 70000) + `"`), t0}}
	if err := s.Send(context.Background(), []Delivery{big}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	buf := make([]byte, 70000)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || n != maxDatagram {
		t.Fatalf("datagram = %d bytes, %v; want %d", n, err, maxDatagram)
	}
}
