// Package ollamatest gives tests the real Ollama backend: Binary finds the
// binary the Makefile built, Serve runs `ollama serve` from it for one test.
//
// Tests that need the backend skip under -short (make unit). Otherwise a
// missing binary skips the test, naming the make target that builds it, unless
// CI or WARDEN_TEST_OLLAMA is set: then it fails, so CI never passes by
// skipping (internal/testenv).
package ollamatest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/internal/testenv"
)

// EnvBinary names the variable the Makefile sets to bin/ollama.
const EnvBinary = "WARDEN_TEST_OLLAMA"

// Binary returns the path of the real Ollama binary: $WARDEN_TEST_OLLAMA, or
// bin/ollama at the module's root. See the package comment for when its
// absence skips and when it fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	testenv.NeedExternal(t, "the real Ollama backend")
	p := os.Getenv(EnvBinary)
	if p == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			testenv.Missing(t, "the real Ollama binary", err)
		}
		p = filepath.Join(root, "bin", "ollama")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "the real Ollama binary at "+p, err)
	}
	return p
}

// Serve runs `ollama serve` from Binary in its own process group with a
// clean environment and an empty model store, waits until it answers, and
// stops the whole group (runners included) when the test ends.
func Serve(t testing.TB) *api.Client {
	t.Helper()
	bin := Binary(t)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"HOME=" + dir,
		"OLLAMA_HOST=" + addr,
		"OLLAMA_MODELS=" + t.TempDir(),
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_CONTEXT_LENGTH=4096",
		"PATH=/usr/bin:/bin",
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ollama: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		// Runners outlive serve: take down whatever is left of the group.
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill ollama process group: %v", err)
		}
		<-exited
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("ollama serve log:\n%s", b)
			}
		}
	})

	c := api.NewClient(&url.URL{Scheme: "http", Host: addr}, &http.Client{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Heartbeat(ctx)
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("ollama serve exited before answering: %v", waitErr)
		case <-ctx.Done():
			t.Fatalf("ollama serve did not answer on %s: %v", addr, err)
		case <-tick.C:
		}
	}
}
