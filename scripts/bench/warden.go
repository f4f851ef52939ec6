package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warden-llm/warden/runtime/ollama"
)

// stopTimeout bounds how long Close waits for Warden after SIGTERM: Warden
// drains its requests and stops its Ollama child in that time, else it is
// killed.
const stopTimeout = 60 * time.Second

// wardenProc is a `warden serve` this program started, with a temporary
// data dir. It owns the process: Close stops it (SIGTERM, then SIGKILL after
// stopTimeout), waits for it, and removes the data dir.
type wardenProc struct {
	baseURL    string // Warden's API
	backendURL string // its Ollama child, from backend.url
	adminKey   string // the key its first run wrote to admin.key
	dataDir    string
	logPath    string

	cmd    *exec.Cmd
	exited chan struct{} // closed when Wait returns
	err    error         // Wait's result, set before exited is closed
}

// wardenSetup is where a started warden keeps its data: under parent
// ("": the system's temporary dir), with models from modelsDir ("": its
// own data dir's); prefetch is its runtime.prefetch (negative: its
// default).
type wardenSetup struct {
	parent    string
	modelsDir string
	prefetch  int
}

// startWarden starts bin at a free loopback port with a fresh data dir and
// waits until /readyz answers 200. onExit is called once, from the goroutine
// that waits for the process, when it ends (also when Close ends it).
func startWarden(ctx context.Context, bin, ollamaBin string, parallel int, setup wardenSetup, startTimeout time.Duration, onExit func(error)) (*wardenProc, error) {
	dir, err := os.MkdirTemp(setup.parent, "warden-bench-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(dir, "warden.log")
	logf, err := os.Create(logPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--listen", addr)
	cmd.Env = wardenEnv(os.Environ(), ollamaBin, parallel)
	if setup.modelsDir != "" {
		cmd.Env = append(cmd.Env, "WARDEN_RUNTIME_MODELS_DIR="+setup.modelsDir)
	}
	if setup.prefetch >= 0 {
		cmd.Env = append(cmd.Env, "WARDEN_RUNTIME_PREFETCH="+strconv.Itoa(setup.prefetch))
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group: a Ctrl-C in the terminal reaches this program,
	// which then stops Warden in order, instead of racing it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start warden: %w", err)
	}
	p := &wardenProc{
		baseURL: "http://" + addr,
		dataDir: dir,
		logPath: logPath,
		cmd:     cmd,
		exited:  make(chan struct{}),
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
		if onExit != nil {
			onExit(p.err)
		}
	}()

	if err := p.waitReady(ctx, startTimeout); err != nil {
		tail := p.logTail(20)
		return nil, fmt.Errorf("%w\n%s", errors.Join(err, p.Close()), tail)
	}
	b, err := os.ReadFile(filepath.Join(dir, "backend.url"))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("read backend.url: %w", err), p.Close())
	}
	p.backendURL = strings.TrimRight(strings.TrimSpace(string(b)), "/")
	if p.backendURL == "" {
		return nil, errors.Join(errors.New("backend.url is empty"), p.Close())
	}
	k, err := os.ReadFile(filepath.Join(dir, "admin.key"))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("read admin.key: %w", err), p.Close())
	}
	p.adminKey = strings.TrimSpace(string(k))
	return p, nil
}

// wardenEnv is the environment without any WARDEN_* setting of the caller's
// (so the run does not depend on the shell), plus the runtime settings.
func wardenEnv(environ []string, ollamaBin string, parallel int) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "WARDEN_") {
			env = append(env, kv)
		}
	}
	if ollamaBin != "" {
		env = append(env, "WARDEN_RUNTIME_OLLAMA_BIN="+ollamaBin)
	}
	if parallel > 0 {
		env = append(env, "WARDEN_RUNTIME_PARALLEL="+strconv.Itoa(parallel))
	}
	// The A/B calls the child directly (backend.url), which netns
	// isolation (the default as root) hides from this namespace.
	env = append(env, "WARDEN_RUNTIME_ISOLATION=loopback")
	// Limits high enough never to refuse, so every request runs the whole
	// quota path (buckets, reservation, settle, persisted usage).
	env = append(env,
		"WARDEN_LIMITS_RPM=100000000",
		"WARDEN_LIMITS_TPM=100000000000",
		"WARDEN_LIMITS_TOKENS_PER_DAY=100000000000",
		"WARDEN_LIMITS_TOKENS_PER_MONTH=1000000000000",
		"WARDEN_LIMITS_CONCURRENCY=10000",
	)
	// Every client of the bench comes from 127.0.0.1, like a front end's
	// clients behind one proxy: the per-address connection ceiling (64)
	// would close the fairness run's heavy clients' connections, which
	// the earlier cells' idle keep-alive connections already hold.
	env = append(env, "WARDEN_SERVER_MAX_CONNECTIONS_PER_IP=1024")
	return env
}

func (p *wardenProc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-p.exited:
		return fmt.Errorf("warden exited while starting: %v", p.err)
	default:
	}
	err := waitReady(ctx, p.baseURL, p.exited)
	if err != nil && errors.Is(err, errExited) {
		return fmt.Errorf("warden exited while starting: %v", p.err)
	}
	return err
}

var errExited = errors.New("process exited")

// waitReady polls base/readyz until it answers 200, ctx ends, or exited
// (if not nil) is closed.
func waitReady(ctx context.Context, base string, exited <-chan struct{}) error {
	hc := &http.Client{Transport: ollama.NewTransport(), Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/readyz not ready (last: %s): %w", base, last, context.Cause(ctx))
		case <-exited:
			return errExited
		case <-tick.C:
		}
	}
}

// Close stops Warden if it still runs, waits for it, and removes the data
// dir (with the log: read logTail first). It reports a failed exit.
func (p *wardenProc) Close() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopTimeout)
		select {
		case <-p.exited:
			t.Stop()
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
			_ = os.RemoveAll(p.dataDir)
			return fmt.Errorf("warden did not stop within %s of SIGTERM and was killed; its Ollama child may be left", stopTimeout)
		}
	}
	var err error
	if p.err != nil && !exitedOnSignal(p.err, syscall.SIGTERM) {
		err = fmt.Errorf("warden: %w", p.err)
	}
	if rmErr := os.RemoveAll(p.dataDir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

func exitedOnSignal(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// logTail is the end of Warden's log, for error reports.
func (p *wardenProc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	lines = lines[max(0, len(lines)-n):]
	return "--- warden log (last lines) ---\n" + string(bytes.Join(lines, []byte("\n")))
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before Warden listens; Warden then fails fast and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
