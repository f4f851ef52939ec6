// Package listener guards the API's listener at accept, before TLS and
// before a byte of HTTP is read: which client addresses may connect (a
// CIDR allowlist), and how many connections are open in all and per client
// address. A refused connection is closed at once and reported. It also
// notices the connections the HTTP server cuts because a client never
// finished its headers in time (see Config.OnHeaderTimeout).
package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Refusal reasons reported to Config.OnRefused.
const (
	ReasonNotAllowed = "not_allowed" // the address is outside Allow
	ReasonTooMany    = "too_many"    // a connection ceiling was reached
)

// Config sets the guard. Zero values: every address allowed, no ceilings.
type Config struct {
	// Allow lists the client networks that may connect; empty allows all.
	Allow []netip.Prefix
	// MaxConns bounds the connections open at once; 0: no bound.
	MaxConns int
	// MaxConnsPerIP bounds one client address's open connections; 0: no bound.
	MaxConnsPerIP int
	// OnRefused, if set, learns each refused connection's client address
	// and reason. It runs on the accepting goroutine: keep it quick.
	OnRefused func(ip netip.Addr, reason string)
	// OnHeaderTimeout, if set, learns each connection closed after a read
	// timed out while it was waiting for a request's headers: before its
	// first request (the TLS handshake included), or once the next one had
	// begun to arrive. A keep-alive connection closed idle, between
	// requests, is not one. It needs the http.Server's ConnContext set to
	// ConnContext and its handler wrapped with Track, to know when a
	// request was read.
	OnHeaderTimeout func(ip netip.Addr)
}

// ParseAllow parses CIDRs ("10.0.0.0/8") and single addresses ("10.0.0.5")
// into prefixes; setting names the config key in errors.
func ParseAllow(setting string, cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(c); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %q is not a CIDR or an IP address", setting, c))
	}
	return out, errors.Join(errs...)
}

// Allowed reports whether ip is inside one of the prefixes (all are
// allowed when there are none).
func Allowed(prefixes []netip.Prefix, ip netip.Addr) bool {
	if len(prefixes) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Listener is a guarded net.Listener.
type Listener struct {
	net.Listener
	cfg Config

	mu    sync.Mutex
	open  int
	perIP map[netip.Addr]int
}

// Wrap guards ln.
func Wrap(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, perIP: map[netip.Addr]int{}}
}

// Open is the number of connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next connection the guard lets in; refused ones are
// closed without a word (before any TLS handshake).
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		if reason := l.admit(ip); reason != "" {
			_ = c.Close()
			if l.cfg.OnRefused != nil {
				l.cfg.OnRefused(ip, reason)
			}
			continue
		}
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *Listener) admit(ip netip.Addr) string {
	if !Allowed(l.cfg.Allow, ip) {
		return ReasonNotAllowed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.cfg.MaxConns > 0 && l.open >= l.cfg.MaxConns) || (l.cfg.MaxConnsPerIP > 0 && l.perIP[ip] >= l.cfg.MaxConnsPerIP) {
		return ReasonTooMany
	}
	l.open++
	l.perIP[ip]++
	return ""
}

func (l *Listener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// conn gives its slot back once, when closed, and reports a header
// timeout then.
type conn struct {
	net.Conn
	l    *Listener
	ip   netip.Addr
	once sync.Once

	served    atomic.Bool  // a request was read (set by Track)
	inRequest atomic.Int32 // requests being served now
	partial   atomic.Bool  // bytes read since the last request ended
	cut       atomic.Bool  // a read timed out while waiting for headers
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.partial.Store(true)
	}
	if err != nil && c.l.cfg.OnHeaderTimeout != nil && c.inRequest.Load() == 0 && (!c.served.Load() || c.partial.Load()) {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			c.cut.Store(true)
		}
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.cut.Load() {
			c.l.cfg.OnHeaderTimeout(c.ip)
		}
		c.l.release(c.ip) // after the report: Open() == 0 means every report is in
	})
	return err
}

// Lockout refuses an allowlist that shuts out every client the listen
// address can reach: loopback for a loopback address, or the network of
// the interface that holds a specific address.
func Lockout(listen string, allow []netip.Prefix) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || len(allow) == 0 {
		return nil
	}
	overlaps := func(p netip.Prefix) bool {
		return slices.ContainsFunc(allow, func(a netip.Prefix) bool { return a.Overlaps(p) })
	}
	if isLoopbackHost(host) {
		if !overlaps(netip.MustParsePrefix("127.0.0.0/8")) && !overlaps(netip.MustParsePrefix("::1/128")) {
			return fmt.Errorf("server.allow %v locks out every client of server.listen %q (loopback): add 127.0.0.1", allow, listen)
		}
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return nil
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		p, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || p.Unmap() != ip.Unmap() {
			continue
		}
		ones, _ := ipn.Mask.Size()
		own := netip.PrefixFrom(p.Unmap(), ones).Masked()
		if !overlaps(own) {
			return fmt.Errorf("server.allow %v shares nothing with %s, the network of server.listen %q: no client could connect", allow, own, listen)
		}
	}
	return nil
}

// isLoopbackHost reports whether a listen host reaches only this machine.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

type connKey struct{}

// ConnContext is an http.Server's ConnContext that lets Track find the
// guarded connection under a request (through TLS too).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	for {
		switch x := c.(type) {
		case *conn:
			return context.WithValue(ctx, connKey{}, x)
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = x.NetConn()
		default:
			return ctx
		}
	}
}

// Track wraps an http.Server's handler so the guarded connection knows
// when it is serving a request: a read that times out then is not a
// header timeout (ReadTimeout cutting a body, or the server ending its
// background read after a response).
func Track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*conn)
		if c == nil {
			h.ServeHTTP(w, r)
			return
		}
		c.served.Store(true)
		c.inRequest.Add(1)
		defer func() {
			c.partial.Store(false)
			c.inRequest.Add(-1)
		}()
		h.ServeHTTP(w, r)
	})
}
