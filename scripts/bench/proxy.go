package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/warden-llm/warden/runtime/ollama"
)

// bareProxy measures Go's own reverse proxy (net/http/httputil, doing
// nothing but forwarding; it runs inside this program) against the same
// backend, cell for cell, as a reference: what one extra HTTP hop costs on
// this machine before any of Warden's work. Where the machine's cores are
// the bottleneck, no gateway can beat its ratio.
func bareProxy(ctx context.Context, stdout, stderr io.Writer, o *options, directURL string, rep *report, failed *int) error {
	u, err := url.Parse(directURL)
	if err != nil {
		return fmt.Errorf("bare proxy: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = ollama.NewTransport()
	rp.FlushInterval = -1 // server-sent events go out as they come
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bare proxy: %w", err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "bare proxy:", err)
		}
	}()
	proxy := newTarget("proxy", "http://"+ln.Addr().String(), "", o.timeout)
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
