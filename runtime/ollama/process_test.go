package ollama

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/runtime/ollama/ollamatest"
)

// patience bounds every wait on the real backend; polls end as soon as
// their condition holds.
const patience = 60 * time.Second

func TestSupervisorStartClose(t *testing.T) {
	t.Setenv("OLLAMA_DEBUG", "1")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	cfg, logs := testConfig(t)
	cfg.ParentEnv = os.LookupEnv
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	start := time.Now()
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	t.Logf("healthy after %v", time.Since(start))
	if !s.Healthy() {
		t.Errorf("Healthy() = false after Start")
	}
	if err := waitHealthy(t.Context(), s); err != nil {
		t.Errorf("waitHealthy: %v", err)
	}
	pid := s.PID()
	if pid == 0 {
		t.Fatal("PID() = 0 while running")
	}
	if got := readFile(t, filepath.Join(cfg.DataDir, "ollama.pid")); got != strconv.Itoa(pid)+"\n" {
		t.Errorf("pidfile = %q, want %d", got, pid)
	}
	if v := getVersion(t, s); !strings.Contains(v, `"version"`) {
		t.Errorf("/api/version = %q, want a version", v)
	}
	// At debug, the child's stdout (gin's access lines) is logged too.
	if out, errs := childOutput(t, pid); !strings.HasPrefix(out, "pipe:") || out != errs {
		t.Errorf("child stdout %q, stderr %q: want both the log pipe", out, errs)
	}
	testwait.For(t, "gin's access line in the log", func() bool {
		return strings.Contains(logs.String(), `GET      \"/api/version\"`)
	})
	environ := readFile(t, "/proc/"+strconv.Itoa(pid)+"/environ")
	for _, bad := range []string{"OLLAMA_DEBUG=", "HTTPS_PROXY=http://proxy.invalid", "GOFLAGS="} {
		if strings.Contains(environ, bad) {
			t.Errorf("child environment holds %s (the parent's)", bad)
		}
	}
	// Its only proxy is Warden's egress proxy, in netns isolation.
	if i := strings.Index(environ, "HTTPS_PROXY="); i >= 0 && !strings.HasPrefix(environ[i:], "HTTPS_PROXY=http://127.0.0.1:") {
		t.Errorf("child proxy is not the egress proxy: %q", environ[i:min(len(environ), i+60)])
	}
	if !strings.Contains(environ, "OLLAMA_NO_CLOUD=1\x00") {
		t.Errorf("child environment lacks OLLAMA_NO_CLOUD=1")
	}

	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	testwait.For(t, "child process group to go", func() bool { return groupEmpty(pid) })
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ollama.pid")); !os.IsNotExist(err) {
		t.Errorf("pidfile after Close: %v, want it removed", err)
	}
	if s.Healthy() || s.PID() != 0 {
		t.Errorf("after Close: Healthy() = %v, PID() = %d", s.Healthy(), s.PID())
	}
	if err := waitHealthy(t.Context(), s); err != ErrStopped {
		t.Errorf("waitHealthy after Close = %v, want ErrStopped", err)
	}
}

// TestChildStdoutBelowDebug: below debug, the child's stdout, which holds
// only gin's per-request access lines, goes to /dev/null, and its stderr
// (Ollama's own log) to the log pipe.
func TestChildStdoutBelowDebug(t *testing.T) {
	cfg, logs := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	if out, errs := childOutput(t, s.PID()); out != "/dev/null" || !strings.HasPrefix(errs, "pipe:") {
		t.Errorf("child stdout %q, stderr %q: want /dev/null and the log pipe", out, errs)
	}
}

// childOutput is where the process pid's stdout and stderr lead.
func childOutput(t *testing.T, pid int) (stdout, stderr string) {
	t.Helper()
	fd := func(n string) string {
		l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + n)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	return fd("1"), fd("2")
}

func TestSupervisorRestartsKilledChild(t *testing.T) {
	cfg, logs := testConfig(t)
	cfg.MinBackoff = 10 * time.Millisecond
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	old := s.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	start := time.Now()
	testwait.For(t, "restart", func() bool { return s.Restarts() == 1 && s.Healthy() })
	t.Logf("healthy again after %v", time.Since(start))
	if err := waitHealthy(t.Context(), s); err != nil {
		t.Errorf("waitHealthy: %v", err)
	}
	if pid := s.PID(); pid == old || pid == 0 {
		t.Errorf("PID() = %d after restart, old %d", pid, old)
	}
	if v := getVersion(t, s); !strings.Contains(v, `"version"`) {
		t.Errorf("/api/version after restart = %q", v)
	}
	testwait.For(t, "old process group to go", func() bool { return groupEmpty(old) })
	if !strings.Contains(logs.String(), "ollama died; restarting") {
		t.Errorf("no restart logged:\n%s", logs)
	}
}

func TestSupervisorReapsLeftovers(t *testing.T) {
	cfg, logs := testConfig(t)
	// A leftover group as a crashed warden leaves it: the leader is gone,
	// another ollama process (as a runner would) lives on in its group.
	leader, leaderDone := spawnOllama(t, cfg, 0)
	member, memberDone := spawnOllama(t, cfg, leader)
	if err := syscall.Kill(leader, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-leaderDone
	if groupEmpty(leader) {
		t.Fatal("leftover group already empty")
	}
	writeFile(t, filepath.Join(cfg.DataDir, "ollama.pid"), strconv.Itoa(leader)+"\n")

	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	testwait.For(t, "leftover to be killed", func() bool {
		select {
		case <-memberDone:
			return groupEmpty(leader)
		default:
			return false
		}
	})
	if !strings.Contains(logs.String(), "killing ollama leftovers") {
		t.Errorf("reaping not logged:\n%s", logs)
	}
	if pid := s.PID(); pid == leader || pid == member || !s.Healthy() {
		t.Errorf("after Start: PID() = %d (leftovers %d, %d), Healthy() = %v", pid, leader, member, s.Healthy())
	}
}

func TestSupervisorReapsGroupAfterCrash(t *testing.T) {
	cfg, logs := testConfig(t)
	cfg.MinBackoff = 10 * time.Millisecond
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	// Stand-in for a runner: another ollama process in the child's group.
	old := s.PID()
	_, memberDone := spawnOllama(t, cfg, old)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "restart", func() bool { return s.Restarts() == 1 && s.Healthy() })
	testwait.For(t, "runner stand-in to be killed", func() bool {
		select {
		case <-memberDone:
			return groupEmpty(old)
		default:
			return false
		}
	})
}

func TestSupervisorReapSparesForeignGroup(t *testing.T) {
	cfg, logs := testConfig(t)
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	writeFile(t, filepath.Join(cfg.DataDir, "ollama.pid"), strconv.Itoa(cmd.Process.Pid)+"\n")

	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("foreign process killed: %v", err)
	}
	if !strings.Contains(logs.String(), "leftovers not killed") {
		t.Errorf("sparing not logged:\n%s", logs)
	}
}

func TestSupervisorStartFails(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Bin = "/bin/false"
	s := NewSupervisor(cfg)
	err := s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("Start with /bin/false = %v, want exit status 1", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ollama.pid")); !os.IsNotExist(err) {
		t.Errorf("pidfile after failed Start: %v, want it removed", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("Close after failed Start: %v", err)
	}
}

func TestSupervisorStartCancelled(t *testing.T) {
	cfg, _ := testConfig(t)
	s := NewSupervisor(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context = %v, want context.Canceled", err)
	}
	if s.PID() != 0 || s.Healthy() {
		t.Errorf("after cancelled Start: PID() = %d, Healthy() = %v", s.PID(), s.Healthy())
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// testConfig returns a config for the real binary with fresh dirs and a
// logger whose output the test can read. Its cleanup checks that no
// process of the test's backend and no goroutine of the package remain.
func testConfig(t *testing.T) (Config, *testlog.Buffer) {
	t.Helper()
	bin := ollamatest.Binary(t)
	goroutines := runtime.NumGoroutine()
	logs := &testlog.Buffer{}
	root := searchableTempDir(t)
	cfg := Config{
		Bin:       bin,
		DataDir:   filepath.Join(root, "data"),
		ModelsDir: filepath.Join(root, "data", "models"),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if err := os.Mkdir(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testwait.For(t, "test's ollama processes to go", func() bool { return len(backendProcs(cfg.ModelsDir)) == 0 })
		testwait.For(t, "goroutines to finish", func() bool { return runtime.NumGoroutine() <= goroutines })
		if t.Failed() {
			t.Logf("supervisor logs:\n%s", logs)
		}
	})
	return cfg, logs
}

// searchableTempDir returns a new temp dir that the child's own user (when
// the tests run as root) can search, as can the dirs above it.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// spawnOllama starts `ollama serve` on a free port, in process group pgid
// (0: a new group of its own), waits until it answers, and returns its pid
// and a channel closed once it has been waited for.
func spawnOllama(t *testing.T, cfg Config, pgid int) (int, <-chan struct{}) {
	t.Helper()
	port, err := freePort(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(childHome(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cfg.Bin, "serve")
	cmd.Env = childEnv(cfg, port, nil)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ollama: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	if err := NewSupervisor(cfg).probe(ctx, &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}); err != nil {
		t.Fatalf("spawned ollama never answered: %v", err)
	}
	return cmd.Process.Pid, done
}

func closeSupervisor(t *testing.T, s *Supervisor) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// backendProcs lists the live processes whose environment names
// modelsDir: everything a test's backend started, runners included.
func backendProcs(modelsDir string) []int {
	ents, _ := os.ReadDir("/proc")
	want := []byte("OLLAMA_MODELS=" + modelsDir + "\x00")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if state, _, ok := procStat(pid); err != nil || !ok || state == 'Z' {
			continue
		}
		if bytes.Contains(env, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func groupEmpty(pgid int) bool {
	ms, err := groupMembers(pgid)
	return err == nil && len(ms) == 0
}

func getVersion(t *testing.T, s *Supervisor) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: s.DialContext}, Timeout: 10 * time.Second}
	resp, err := hc.Get(s.URL().JoinPath("/api/version").String())
	if err != nil {
		t.Fatalf("GET /api/version: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/version: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy blocks until s's child is healthy, ctx is done, or the
// supervisor stops (ErrStopped).
func waitHealthy(ctx context.Context, s *Supervisor) error {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrStopped
	case <-s.done:
		return ErrStopped
	}
}
