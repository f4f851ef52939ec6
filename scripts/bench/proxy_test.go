package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
)

// TestMain lets the test binary be the bare proxy's process, as the bench's
// own binary is.
func TestMain(m *testing.M) {
	if backend := os.Getenv(bareProxyEnv); backend != "" {
		if err := serveBareProxy(backend, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBareProxyProcess: the bare proxy runs in a process of its own,
// forwards to the backend, and ends when stopped.
func TestBareProxyProcess(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend saw %s %s", r.Method, r.URL.Path)
	}))
	defer backend.Close()
	addr, pid, stop, err := startBareProxy(t.Context(), backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	if pid == os.Getpid() || syscall.Kill(pid, 0) != nil {
		t.Errorf("proxy pid %d: want a live process of its own", pid)
	}
	resp, err := http.Get("http://" + addr + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "backend saw GET /v1/chat/completions" {
		t.Errorf("through the proxy: %q", body)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("proxy process %d still runs after stop", pid)
	}
}
