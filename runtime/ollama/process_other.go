//go:build !linux

package ollama

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
)

// Supervising an Ollama child relies on Linux: process groups reaped as a
// whole and /proc to find leftovers. Elsewhere Warden builds, and attaches to
// an Ollama that is already running (runtime.ollama_url).

// errNotLinux is what starting a child reports off Linux.
var errNotLinux = errors.New("supervising an Ollama child needs Linux: set runtime.ollama_url to use a running Ollama")

// child is never made off Linux.
type child struct {
	pid     int
	url     *url.URL
	exited  chan struct{}
	waitErr error
}

func (s *Supervisor) spawn(int) (*child, error) { return nil, errNotLinux }

func (s *Supervisor) stopChild(*child, bool) {}

func (s *Supervisor) reapPidfile() {}

func (s *Supervisor) removePidfile() {}

// sandbox is never set up off Linux.
type sandbox struct{}

func (s *Supervisor) prepareSandbox() error { return errNotLinux }

func (b *sandbox) String() string { return "none" }

func (b *sandbox) isolateThread() (bool, error) { return false, nil }

func (b *sandbox) close() {}

func (b *sandbox) startEgress(*slog.Logger) {}

func (b *sandbox) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// ChildDialer finds no namespace off Linux.
func ChildDialer(string) (func(ctx context.Context, network, addr string) (net.Conn, error), func()) {
	return nil, func() {}
}
