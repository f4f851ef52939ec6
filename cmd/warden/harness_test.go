package main

// The end-to-end tests run the real warden binary, which runs the real
// Ollama built by `make backend` with the demo model, and talk to it through
// the official openai-go client. Without bin/ollama they skip naming
// `make test`, and fail when CI or WARDEN_TEST_OLLAMA is set (ollamatest).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/runtime/ollama/ollamatest"
)

var (
	buildOnce  sync.Once
	wardenBin  string
	buildErr   error
	sharedOnce sync.Once
	shared     *wardenProc
	sharedErr  error
	tmpRoot    string
)

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "warden-e2e-")
	if err == nil {
		// Run as root, serve runs the child as its own user, which must
		// reach the data dirs below.
		err = os.Chmod(tmpRoot, 0o711)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// ollamaBin is the backend binary the Makefile points at, or the repository's
// bin/ollama; without it the test skips, or fails under CI (ollamatest).
func ollamaBin(t testing.TB) string {
	t.Helper()
	return ollamatest.Binary(t)
}

func buildWarden(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		wardenBin = filepath.Join(tmpRoot, "warden")
		out, err := exec.Command("go", "build", "-o", wardenBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return wardenBin
}

// wardenProc is one running `warden serve`.
type wardenProc struct {
	cmd     *exec.Cmd
	dataDir string
	models  string
	base    string
	key     string // the admin key made on first run
	log     *testlog.Buffer
	done    chan struct{}
	waitErr error
	hc      *http.Client // what reaches base (a TLS client for an https base)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startWarden runs warden serve with extra TOML config on dataDir (a new
// one when empty) and waits until /readyz answers 200.
func startWarden(t testing.TB, dataDir, extraTOML string) *wardenProc {
	t.Helper()
	return startWardenWith(t, dataDir, extraTOML, nil)
}

// startWardenWith is startWarden for a server reached with hc: nil for
// plain HTTP, else a client that trusts the server's TLS certificate.
func startWardenWith(t testing.TB, dataDir, extraTOML string, hc *http.Client) *wardenProc {
	t.Helper()
	bin := buildWarden(t)
	ollama := ollamaBin(t)
	if dataDir == "" {
		var err error
		dataDir, err = os.MkdirTemp(tmpRoot, "data-")
		if err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dataDir, "test.toml")
	toml := fmt.Sprintf("[runtime]\nollama_bin = %q\n%s\n", ollama, extraTOML)
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := &wardenProc{dataDir: dataDir, models: filepath.Join(dataDir, "models"), base: "http://" + addr, log: &testlog.Buffer{}, done: make(chan struct{}), hc: http.DefaultClient}
	if hc != nil {
		p.base, p.hc = "https://"+addr, hc
	}
	p.cmd = exec.Command(bin, "serve", "--config", conf, "--data-dir", dataDir, "--listen", addr)
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dataDir}
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	waitFor(t, 3*time.Minute, "warden ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("warden exited before ready: %v\n%s", p.waitErr, p.log.String())
		default:
		}
		resp, err := p.hc.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.key"))
	if err != nil {
		t.Fatalf("first run wrote no admin key: %v", err)
	}
	p.key = strings.TrimSpace(string(b))
	return p
}

// stop sends SIGTERM and waits for warden to exit.
func (p *wardenProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// sharedWarden is one server (default settings) for the tests that do not
// need one of their own.
func sharedWarden(t testing.TB) *wardenProc {
	t.Helper()
	ollamaBin(t) // skip (or fail) each caller here, never inside the once
	sharedOnce.Do(func() {
		// startWarden calls t.Fatal on failure; keep the first test's t out
		// of the once so a failure is reported to every caller.
		defer func() {
			if shared == nil && sharedErr == nil {
				sharedErr = fmt.Errorf("shared warden did not start")
			}
		}()
		shared = startWarden(t, "", "")
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func (p *wardenProc) client() *openai.Client { return p.clientWith(p.key) }

// clientWith is an openai-go client using key.
func (p *wardenProc) clientWith(key string) *openai.Client {
	c := openai.NewClient(
		option.WithBaseURL(p.base+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(2*time.Minute),
		option.WithHTTPClient(p.hc),
	)
	return &c
}

// post sends a raw JSON body and returns status and body.
func (p *wardenProc) post(t testing.TB, path, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := p.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// warden runs an admin command on p's data dir and returns its stdout.
func (p *wardenProc) warden(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(buildWarden(t), append(args, "--data-dir", p.dataDir)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + p.dataDir}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("warden %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("warden %v: %v", args, err)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	delay := 20 * time.Millisecond
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", deadline, what)
		}
		time.Sleep(delay)
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// ollamaProcs lists the live ollama processes (serve and runner) whose
// environment has OLLAMA_MODELS=models: those of one warden's backend,
// orphans included.
func ollamaProcs(t testing.TB, models string) (serve, runner []int) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("OLLAMA_MODELS=" + models + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if zombie(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 {
			continue
		}
		switch args[1] {
		case "serve":
			serve = append(serve, pid)
		case "runner":
			runner = append(runner, pid)
		}
	}
	return serve, runner
}

func zombie(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "State:") {
			return strings.Contains(sc.Text(), "Z")
		}
	}
	return false
}

// chatParams is a deterministic request with an explicit output cap.
func chatParams(content string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       "warden-demo",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
		Seed:        openai.Int(1),
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
