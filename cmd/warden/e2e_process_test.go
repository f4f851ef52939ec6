package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// readChunks starts a stream and reads n content chunks from it.
func readChunks(t *testing.T, w *wardenProc, ctx context.Context, maxTokens int64, n int) interface {
	Next() bool
	Err() error
	Current() openai.ChatCompletionChunk
} {
	t.Helper()
	stream := w.client().Chat.Completions.NewStreaming(ctx, chatParams("Keep talking.", maxTokens))
	for got := 0; got < n; {
		if !stream.Next() {
			t.Fatalf("stream ended after %d chunks: %v", got, stream.Err())
		}
		for _, ch := range stream.Current().Choices {
			if ch.Delta.Content != "" {
				got++
			}
		}
	}
	return stream
}

// TestE2ECancelFreesSlot cancels long streams on a backend with one slot,
// and after each the next request must get that slot. Ollama can lose the
// slot of a stream cancelled at the wrong moment (runtime/ollama/slots.go);
// Warden has to notice and free it, or the next request waits forever.
// Several rounds give that moment more chances to come up.
func TestE2ECancelFreesSlot(t *testing.T) {
	w := startWarden(t, "", "parallel = 1")
	defer w.stop()

	for round := range 3 {
		ctx, cancel := context.WithCancel(ctxT(t))
		stream := readChunks(t, w, ctx, 100000, 5)
		cancel()
		for stream.Next() {
		}

		// The cancelled stream must leave the backend: otherwise this
		// waits for 100,000 tokens (several minutes at this model's speed)
		// or, with the slot lost, forever; both far past this deadline.
		next, cancelNext := context.WithTimeout(context.Background(), 90*time.Second)
		resp, err := w.client().Chat.Completions.New(next, chatParams("Hello", 8))
		cancelNext()
		if err != nil {
			t.Fatalf("round %d: request after cancelling a long stream: %v\n%s", round, err, w.log.String())
		}
		if resp.Usage.CompletionTokens != 8 {
			t.Errorf("round %d: completion tokens = %d, want 8", round, resp.Usage.CompletionTokens)
		}
	}
}

// childPID reads the pid of the ollama child (its group id) from the pidfile.
func childPID(t *testing.T, w *wardenProc) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dataDir, "ollama.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.Fields(string(b))[0]))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// assertOneBackend waits until exactly one `ollama serve` and at most one
// runner exist for w's models dir: no orphans.
func assertOneBackend(t *testing.T, w *wardenProc) {
	t.Helper()
	var serve, runner []int
	waitFor(t, time.Minute, "one ollama serve and at most one runner", func() bool {
		serve, runner = ollamaProcs(t, w.models)
		return len(serve) == 1 && len(runner) <= 1
	})
}

func TestE2EChildKilledMidRequest(t *testing.T) {
	w := startWarden(t, "", "parallel = 2")
	defer w.stop()
	ctx := ctxT(t)

	// A non-streaming request in flight, then a stream that has started.
	plainErr := make(chan error, 1)
	go func() {
		_, err := w.client().Chat.Completions.New(ctx, chatParams("Long answer please.", 100000))
		plainErr <- err
	}()
	stream := readChunks(t, w, ctx, 100000, 3)
	pid := childPID(t, w)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "backend_unavailable") {
		t.Errorf("started stream ended with %v, want an error event with backend_unavailable", err)
	}
	var apiErr *openai.Error
	if err := <-plainErr; !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("non-streaming request in flight got %v, want 503", err)
	}
	// Both are recorded as what they were: 503, the stream with the hash
	// and count of what it delivered before the error event.
	var failed, partial int
	for _, r := range auditRecords(t, w) {
		if r["kind"] == "completion" && r["status"] == float64(http.StatusServiceUnavailable) {
			failed++
			if n, _ := r["tokens_out"].(float64); n >= 3 && r["response_sha256"] != nil {
				partial++
			}
		}
	}
	if failed != 2 || partial != 1 {
		t.Errorf("completion records with status 503: %d (%d with the stream's partial answer), want 2 and 1", failed, partial)
	}

	// The next request succeeds once the child is back; until then only 503.
	waitFor(t, 2*time.Minute, "a request to succeed after the restart", func() bool {
		_, err := w.client().Chat.Completions.New(ctx, chatParams("Hello", 4))
		if err == nil {
			return true
		}
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request during the restart: %v, want 503", err)
		}
		return false
	})
	if got := childPID(t, w); got == pid {
		t.Errorf("child pid unchanged (%d) after it was killed", pid)
	}
	assertOneBackend(t, w)
}

func TestE2EWardenKilledAndRestarted(t *testing.T) {
	w := startWarden(t, "", "")
	if _, err := w.client().Chat.Completions.New(ctxT(t), chatParams("Hello", 4)); err != nil {
		t.Fatal(err)
	}
	// SIGKILL: no chance to stop the child. Its runner is left behind.
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-w.done

	again := startWarden(t, w.dataDir, "")
	defer again.stop()
	if _, err := again.client().Chat.Completions.New(ctxT(t), chatParams("Hello", 4)); err != nil {
		t.Fatalf("request after restart: %v", err)
	}
	assertOneBackend(t, again)
}

func TestE2EDrainOnSIGTERM(t *testing.T) {
	w := startWarden(t, "", "")
	stream := readChunks(t, w, ctxT(t), 400, 1)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var finish string
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil || finish != "length" {
		t.Errorf("stream in flight at SIGTERM ended with err=%v finish=%q, want a complete stream ending in length", err, finish)
	}
	<-w.done
	if w.waitErr != nil {
		t.Errorf("warden exit: %v\n%s", w.waitErr, w.log.String())
	}
	if _, err := http.Get(w.base + "/healthz"); err == nil {
		t.Error("warden still answers after shutdown")
	}
	waitFor(t, time.Minute, "no ollama process left", func() bool {
		serve, runner := ollamaProcs(t, w.models)
		return len(serve) == 0 && len(runner) == 0
	})
}

// TestE2EDrainTimeoutCutsStream: a stream still running when the drain
// timeout runs out ends with an error event while its client is there,
// and is recorded with that status (503), not as delivered.
func TestE2EDrainTimeoutCutsStream(t *testing.T) {
	w := startWarden(t, "", "[server]\ndrain_timeout = \"1s\"")
	stream := readChunks(t, w, ctxT(t), 100000, 1)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "server_shutting_down") {
		t.Errorf("stream cut by the drain timeout ended with %v, want an error event with server_shutting_down", err)
	}
	<-w.done
	if w.waitErr != nil {
		t.Errorf("warden exit: %v\n%s", w.waitErr, w.log.String())
	}
	var cut int
	for _, r := range auditRecords(t, w) {
		if r["kind"] == "completion" && r["status"] == float64(http.StatusServiceUnavailable) && r["response_sha256"] != nil {
			cut++
		}
	}
	if cut != 1 {
		t.Errorf("completion records with status 503 and a response hash: %d, want the cut stream's", cut)
	}
}
