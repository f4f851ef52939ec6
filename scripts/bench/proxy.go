package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/warden-llm/warden/runtime/ollama"
)

// bareProxy measures Go's own reverse proxy (net/http/httputil, doing
// nothing but forwarding) against the same backend, cell for cell, as a
// reference: what one extra HTTP hop costs on this machine before any of
// Warden's work. Where the machine's cores are the bottleneck, no gateway
// can beat its ratio. It runs in a process of its own (this program,
// started again), so that its CPU per request is measured as Warden's is.
func bareProxy(ctx context.Context, stdout, stderr io.Writer, o *options, directURL string, rep *report, failed *int) error {
	addr, pid, stop, err := startBareProxy(ctx, directURL)
	if err != nil {
		return fmt.Errorf("bare proxy: %w", err)
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(stderr, "bare proxy:", err)
		}
	}()
	proxy := newTarget("proxy", "http://"+addr, "", o.timeout)
	proxy.pid = pid
	direct := newTarget("direct", directURL, "", o.timeout)
	defer proxy.close()
	defer direct.close()
	fmt.Fprintln(stderr, "bare reverse proxy (net/http/httputil) against the same backend ...")
	for _, stream := range o.streams {
		var cells []cellResult
		for _, clients := range o.concurrency {
			c, err := runCell(ctx, stderr, o, proxy, direct, stream, clients)
			if err != nil {
				return err
			}
			c.Gateway = proxy.name
			summarize(&c, targetRatio)
			// The reference's own failed requests are printed with its
			// table, not counted against Warden's run (one streamed
			// answer in some thousands ended early through it here).
			*failed += c.Summary.Direct.Errors
			cells = append(cells, c)
			rep.BareProxyCells = append(rep.BareProxyCells, c)
		}
		if stream == o.streams[0] {
			fmt.Fprintln(stdout, "\nreference: a bare reverse proxy (net/http/httputil, no keys, filters or audit) in front of the same backend")
		}
		printTable(stdout, "proxy", "direct", stream, cells)
	}
	return nil
}

// bareProxyEnv, set to a backend's URL, makes this program the bare proxy
// in front of it: it prints the address it listens on as its first line,
// then serves until its standard input closes.
const bareProxyEnv = "WARDEN_BENCH_BARE_PROXY"

// startBareProxy starts this program again as the bare proxy in front of
// backend. stop ends it (closing its standard input) and waits for it.
func startBareProxy(ctx context.Context, backend string) (addr string, pid int, stop func() error, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), bareProxyEnv+"="+backend)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", 0, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() error {
		in.Close()
		return cmd.Wait()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = stop()
		return "", 0, nil, fmt.Errorf("no address from the proxy process: %w", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid, stop, nil
}

// serveBareProxy is the bare proxy's process: Go's reverse proxy with the
// transport Warden uses for its backend, until stdin closes.
func serveBareProxy(backend string, stdin io.Reader, stdout io.Writer) error {
	u, err := url.Parse(backend)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = ollama.NewTransport()
	rp.FlushInterval = -1 // server-sent events go out as they come
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintln(stdout, ln.Addr().String())
	_, _ = io.Copy(io.Discard, stdin) // until the bench closes it
	_ = srv.Close()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
