package ollama

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// childDialer makes the connections to the child and the egress proxy's.
var childDialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// egressProxy is the child's only way out of its network namespace: an
// HTTP proxy (CONNECT for HTTPS, plain forwarding for HTTP) listening on
// the namespace's loopback, which the child uses through HTTPS_PROXY and
// HTTP_PROXY, so pulls work. Its connections out are made from Warden's
// namespace. Nothing outside the child's namespace can reach it.
type egressProxy struct {
	ln  net.Listener
	log *slog.Logger
	srv *http.Server
	rt  *http.Transport

	// allow says whether the child may connect to ip (egressAllowed; tests
	// widen it to reach their loopback fixtures).
	allow func(ip net.IP) bool

	wg    sync.WaitGroup // Serve and the tunnels
	mu    sync.Mutex
	conns map[net.Conn]struct{} // open tunnels' ends
	done  bool
}

// newEgressProxy serves on ln (created inside the child's namespace) until
// close.
func newEgressProxy(ln net.Listener, log *slog.Logger) *egressProxy {
	p := &egressProxy{
		ln:    ln,
		log:   log,
		allow: egressAllowed,
		conns: make(map[net.Conn]struct{}),
	}
	p.rt = &http.Transport{Proxy: nil, DialContext: p.dial, IdleConnTimeout: 30 * time.Second}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.Serve(ln)
	}()
	return p
}

// env is what the child needs to use the proxy.
func (p *egressProxy) env() []string {
	u := "http://" + p.ln.Addr().String()
	return []string{"HTTPS_PROXY=" + u, "HTTP_PROXY=" + u}
}

func (p *egressProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w, r)
		return
	}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		http.Error(w, "egress proxy: want an absolute http URL or CONNECT", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	out.Header.Del("Proxy-Authorization")
	resp, err := p.rt.RoundTrip(out)
	if errors.Is(err, errEgressRefused) {
		http.Error(w, "egress proxy: destination refused", http.StatusForbidden)
		return
	}
	if err != nil {
		p.log.Warn("ollama egress", "host", r.URL.Host, "err", err)
		http.Error(w, "egress proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// errEgressRefused reports a destination the child may not reach.
var errEgressRefused = errors.New("egress destination refused")

// dial resolves addr and connects to its first address the proxy allows;
// it dials that IP itself, so a name cannot resolve differently later.
func (p *egressProxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if p.allow(ip.IP) {
			return childDialer.DialContext(ctx, network, net.JoinHostPort(ip.IP.String(), port))
		}
	}
	return nil, fmt.Errorf("%w: %s", errEgressRefused, host)
}

// tunnel connects the child to r.Host and copies both ways until either
// side ends or the proxy closes.
func (p *egressProxy) tunnel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	up, err := p.dial(ctx, "tcp", r.Host)
	cancel()
	if errors.Is(err, errEgressRefused) {
		http.Error(w, "egress proxy: destination refused", http.StatusForbidden)
		return
	}
	if err != nil {
		p.log.Warn("ollama egress", "host", r.Host, "err", err)
		http.Error(w, "egress proxy: cannot connect", http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "egress proxy: no hijack", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(up, down) {
		return
	}
	p.log.Debug("ollama egress", "host", r.Host)
	_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	var once sync.Once
	end := func() {
		once.Do(func() {
			up.Close()
			down.Close()
			p.untrack(up, down)
		})
	}
	go func() { // owned through the tunnel's count, taken in track and given back by end
		defer end()
		_, _ = io.Copy(up, buf) // what the child sent, buffered first
	}()
	defer end()
	_, _ = io.Copy(down, up)
}

// track records a tunnel's ends; it refuses (closing them) once the proxy
// is closed.
func (p *egressProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	p.wg.Add(1) // the tunnel, until untrack: close waits for it
	return true
}

func (p *egressProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
	p.wg.Done()
}

// close stops the proxy, ends its tunnels and waits for its goroutines.
func (p *egressProxy) close() {
	_ = p.srv.Close() // the listener and the connections it still owns
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.rt.CloseIdleConnections()
}

// egressAllowed refuses the destinations the child must not reach through
// the proxy: the host's loopback services (Warden's own API among them),
// unspecified addresses, and link-local and multicast ones (cloud metadata
// at 169.254.169.254 among them). Registries on the LAN stay reachable.
func egressAllowed(ip net.IP) bool {
	return !ip.IsLoopback() && !ip.IsUnspecified() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() &&
		!ip.IsInterfaceLocalMulticast() && !ip.IsMulticast()
}
