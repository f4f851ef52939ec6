package outbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Syslog priority parts (RFC 5424 section 6.2.1).
const (
	facilityLocal0 = 16
	sevWarning     = 4
	sevNotice      = 5
	sevInfo        = 6
)

// Replay window: what a stream sink re-sends after its connection breaks.
const (
	replayAge = 10 * time.Second
	replayMax = 10000
	// maxDatagram keeps a UDP message under the IPv4 payload limit; a
	// longer one is cut (a receiver could not take it whole anyway).
	maxDatagram = 65000
)

// Syslog sends RFC 5424 messages: over TLS (RFC 5425) or plain TCP with
// octet counting ("LEN SP MSG"), or over UDP one datagram per message
// (RFC 5426). The priority is local0 with severity info for audit records,
// notice for checkpoints and warning for alerts; MSGID is the topic and
// MSG the JSON body.
//
// Syslog over TCP has no acknowledgements: a batch counts as sent once it
// is written without error, yet the receiver may die with it in a socket
// buffer or its own queue. So the sink keeps the messages it wrote on the
// current connection during the last 10 seconds (at most 10,000), watches
// the connection for the receiver closing it, and after a break replays
// them on the next connection before anything new. Delivery stays at least
// once (the receiver sees some messages twice) for a receiver outage; the
// window does not survive a restart of Warden itself. Flush (called by the
// outbox when it has nothing new) replays the window when the connection
// broke after the last batch. UDP is fire and
// forget: only errors the kernel reports are retried.
//
// Receivers cap message size (rsyslog: maxMessageSize, 8k by default, set
// with global(maxMessageSize="64k")): raise it above the largest record.
type Syslog struct {
	name     string
	network  string // "tls", "tcp", "udp"
	address  string
	tls      *tls.Config
	timeout  time.Duration
	hostname string
	appName  string
	procID   string
	now      func() time.Time

	mu     sync.Mutex
	conn   net.Conn
	dead   chan struct{} // closed when the connection's reader sees it end
	reader chan struct{} // closed when the reader goroutine has returned
	window []written
}

type written struct {
	d  Delivery
	at time.Time
}

var (
	_ Sink    = (*Syslog)(nil)
	_ Flusher = (*Syslog)(nil)
)

func newSyslog(cfg SinkConfig) (*Syslog, error) {
	if cfg.URL != "" || len(cfg.Headers) > 0 {
		return nil, fmt.Errorf("%w: sink %q: url and headers are for webhooks", ErrInvalidSink, cfg.Name)
	}
	if cfg.Network == "" {
		cfg.Network = "tls"
	}
	host, err := splitAddress(cfg)
	if err != nil {
		return nil, err
	}
	s := &Syslog{
		name:     cfg.Name,
		network:  cfg.Network,
		address:  cfg.Address,
		timeout:  cfg.Timeout,
		hostname: headerField(cfg.Hostname, 255),
		appName:  headerField(cfg.AppName, 48),
		procID:   strconv.Itoa(os.Getpid()),
		now:      time.Now,
	}
	switch cfg.Network {
	case "tls":
		if s.tls, err = cfg.TLSConfig(host); err != nil {
			return nil, err
		}
	case "tcp", "udp":
		if cfg.hasTLSSettings() {
			return nil, fmt.Errorf("%w: sink %q: TLS settings need network \"tls\", not %q", ErrInvalidSink, cfg.Name, cfg.Network)
		}
	default:
		return nil, fmt.Errorf("%w: sink %q: network %q: want \"tls\", \"tcp\" or \"udp\"", ErrInvalidSink, cfg.Name, cfg.Network)
	}
	if cfg.AppName == "" {
		s.appName = "warden"
	}
	if cfg.Hostname == "" {
		h, _ := os.Hostname()
		s.hostname = headerField(h, 255)
	}
	return s, nil
}

// Name is the sink's configured name.
func (s *Syslog) Name() string { return s.name }

// Send writes batch, replaying the window first after a broken connection.
func (s *Syslog) Send(ctx context.Context, batch []Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(ctx, batch)
}

// Flush replays the window when the connection it was written on has
// broken, so messages written just before the receiver went away arrive
// even when nothing new follows them.
func (s *Syslog) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.window) == 0 || (s.conn != nil && !s.isDead()) {
		return nil
	}
	return s.send(ctx, nil)
}

func (s *Syslog) send(ctx context.Context, batch []Delivery) error {
	if s.conn != nil && s.isDead() {
		s.closeConn()
	}
	replay := s.conn == nil && s.network != "udp" && len(s.window) > 0
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := s.conn.SetWriteDeadline(s.now().Add(s.timeout)); err != nil {
		s.closeConn()
		return fmt.Errorf("syslog %s: %w", s.address, err)
	}
	var err error
	if s.network == "udp" {
		for _, d := range batch {
			if _, err = s.conn.Write(s.format(d, maxDatagram)); err != nil {
				break
			}
		}
	} else {
		var buf bytes.Buffer
		if replay {
			for _, w := range s.window {
				frame(&buf, s.format(w.d, 0))
			}
		}
		for _, d := range batch {
			frame(&buf, s.format(d, 0))
		}
		_, err = s.conn.Write(buf.Bytes())
	}
	if err != nil {
		s.closeConn()
		return fmt.Errorf("syslog %s: %w", s.address, err)
	}
	if s.network != "udp" {
		s.remember(batch, replay)
	}
	return nil
}

// remember adds batch to the replay window and trims it.
func (s *Syslog) remember(batch []Delivery, replayed bool) {
	now := s.now()
	if replayed {
		for i := range s.window {
			s.window[i].at = now
		}
	}
	for _, d := range batch {
		s.window = append(s.window, written{d, now})
	}
	cut := max(len(s.window)-replayMax, 0)
	for cut < len(s.window) && now.Sub(s.window[cut].at) > replayAge {
		cut++
	}
	s.window = append(s.window[:0:0], s.window[cut:]...)
}

// Close closes the connection and waits for its reader.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeConn()
	return nil
}

func (s *Syslog) dial(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	network := s.network
	if network == "tls" {
		network = "tcp"
	}
	var d net.Dialer
	conn, err := d.DialContext(dctx, network, s.address)
	if err != nil {
		return fmt.Errorf("syslog dial: %w", err)
	}
	if s.network == "tls" {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return fmt.Errorf("syslog tls handshake with %s: %w", s.address, err)
		}
		conn = tc
	}
	s.conn = conn
	s.dead = make(chan struct{})
	s.reader = make(chan struct{})
	if s.network == "udp" {
		close(s.reader)
		return nil
	}
	// A syslog receiver never writes: a read returning means the
	// connection ended (EOF, reset, or our own Close).
	go func(conn net.Conn, dead, done chan struct{}) {
		defer close(done)
		buf := make([]byte, 256)
		for {
			if _, err := conn.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					// Send's ctx deadline trick reached the reader too.
					conn.SetReadDeadline(time.Time{})
					continue
				}
				close(dead)
				return
			}
		}
	}(conn, s.dead, s.reader)
	return nil
}

func (s *Syslog) isDead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

func (s *Syslog) closeConn() {
	if s.conn == nil {
		return
	}
	s.conn.Close()
	<-s.reader
	s.conn = nil
}

// frame appends one octet-counted frame (RFC 6587 section 3.4.1).
func frame(buf *bytes.Buffer, msg []byte) {
	buf.WriteString(strconv.Itoa(len(msg)))
	buf.WriteByte(' ')
	buf.Write(msg)
}

// format renders d as an RFC 5424 message, cut to limit bytes when
// limit > 0.
func (s *Syslog) format(d Delivery, limit int) []byte {
	sev := sevInfo
	switch d.Topic {
	case TopicCheckpoint:
		sev = sevNotice
	case TopicAlert:
		sev = sevWarning
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s %s %s - ",
		facilityLocal0*8+sev,
		d.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		s.hostname, s.appName, s.procID, headerField(d.Topic, 32))
	b.Write(d.Body)
	out := b.Bytes()
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// headerField makes v a valid RFC 5424 header field: printable US-ASCII
// without spaces (others become '_'), at most n bytes, "-" when empty.
func headerField(v string, n int) string {
	if v == "" {
		return "-"
	}
	b := []byte(v)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
