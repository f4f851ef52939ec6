package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// stockOllama is a second `ollama serve` as a user would run it with
// Ollama's default of one slot (OLLAMA_NUM_PARALLEL=1), on the models
// Warden's child serves: the baseline of "Warden keeps the batch full".
type stockOllama struct {
	baseURL string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startStock starts bin serve on a free loopback port over modelsDir, with
// a clean environment (Ollama logs its whole environment) and the context
// length Warden gives its child, and waits until it answers.
func startStock(ctx context.Context, bin, modelsDir string, contextLength int, timeout time.Duration) (*stockOllama, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	home, err := os.MkdirTemp("", "warden-bench-stock-")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(home, "ollama.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"HOME=" + home,
		"PATH=/usr/bin:/bin",
		"OLLAMA_HOST=" + addr,
		"OLLAMA_MODELS=" + modelsDir,
		"OLLAMA_NUM_PARALLEL=1",
		"OLLAMA_CONTEXT_LENGTH=" + strconv.Itoa(contextLength),
		"OLLAMA_KEEP_ALIVE=30m",
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_NOPRUNE=1", // the blobs are Warden's child's too
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own group: the runner it starts stays in it, so Close can stop both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start stock ollama: %w", err)
	}
	s := &stockOllama{baseURL: "http://" + addr, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitUp(ctx, timeout); err != nil {
		s.Close()
		return nil, fmt.Errorf("stock ollama: %w", err)
	}
	return s, nil
}

// waitUp polls /api/version until it answers 200.
func (s *stockOllama) waitUp(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/api/version", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not up: %w", s.baseURL, ctx.Err())
		case <-s.exited:
			return errors.New("exited while starting")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the stock Ollama's process group (serve and its runner) and
// waits for serve.
func (s *stockOllama) Close() {
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exited
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // a runner left behind
	_ = os.RemoveAll(filepath.Dir(s.logPath))
}

var errNoOllamaBin = errors.New("the stock Ollama side needs -ollama")
