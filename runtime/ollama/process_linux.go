package ollama

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/store"
)

// childSysProcAttr puts the child in its own process group, so that the
// whole group (ollama serve and its runner subprocesses) can be signalled at
// once, and asks the kernel to SIGKILL it if the thread that forked it dies.
// That thread is the supervise goroutine's, locked for the child's lifetime
// (golang/go#27505: Pdeathsig follows the thread, not the process).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// groupMember is one live (not zombie) process of a process group.
type groupMember struct {
	pid     int
	cmdline string // arguments joined by spaces
}

// groupMembers lists the live processes whose process group is pgid, read
// from /proc. Zombies are left out: they hold no resources and nothing can
// kill them, and an init that does not reap would keep them forever.
func groupMembers(pgid int) ([]groupMember, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []groupMember
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pg, ok := procStat(pid)
		if !ok || pg != pgid || state == 'Z' || state == 'X' {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // gone in the meantime
		}
		cmd = bytes.TrimRight(cmd, "\x00")
		if len(cmd) == 0 {
			// A process being torn down has no memory left and reads as
			// an empty command line before it turns zombie: it is going
			// already, and is no sign of a foreign group (an ollama
			// killed with the leader showed up so, and made the group
			// look foreign, so its runners were left alive).
			continue
		}
		out = append(out, groupMember{pid: pid, cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))})
	}
	return out, nil
}

// procStat reads the state and the process group of pid from
// /proc/pid/stat.
func procStat(pid int) (state byte, pgid int, ok bool) {
	f, err := proc.Stat(pid)
	if err != nil || len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

// isOllama reports whether a command line is an ollama binary's (serve or
// runner): the first argument's base name holds "ollama".
func isOllama(cmdline string) bool {
	arg0, _, _ := strings.Cut(cmdline, " ")
	return strings.Contains(filepath.Base(arg0), "ollama")
}

// errForeignGroup reports a process group that holds processes other than
// ollama's: its id was reused, and it is not ours to kill.
var errForeignGroup = errors.New("process group holds non-ollama processes")

// signalGroup sends sig to process group pgid after checking, in /proc, that
// every live member is an ollama process. It reports how many members it
// found; zero means the group is gone.
func signalGroup(pgid int, sig syscall.Signal) (int, error) {
	if pgid <= 1 {
		return 0, errors.New("invalid process group")
	}
	ms, err := groupMembers(pgid)
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if !isOllama(m.cmdline) {
			return len(ms), fmt.Errorf("%w: pid %d %q", errForeignGroup, m.pid, m.cmdline)
		}
	}
	if len(ms) == 0 {
		return 0, nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return len(ms), err
	}
	return len(ms), nil
}

// groupGone polls until process group pgid has no live members or timeout
// passes, and reports whether it is gone.
func groupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		ms, err := groupMembers(pgid)
		if err == nil && len(ms) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}

// child is one spawned `ollama serve`. Its wait goroutine is the only caller
// of cmd.Wait; its log goroutine reads the child's output.
type child struct {
	pid     int // also the process group id
	url     *url.URL
	exited  chan struct{} // closed after cmd.Wait returned
	waitErr error         // set before exited is closed
	logs    chan struct{} // closed when the log reader has finished
	out     *os.File      // read end of the output pipe
}

// spawn starts a child on port. It must run on the supervise goroutine's
// locked thread.
func (s *Supervisor) spawn(port int) (*child, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command(s.cfg.Bin, "serve")
	cmd.Env = append(childEnv(s.cfg, port, s.cfg.ParentEnv), s.box.env()...)
	cmd.Dir = childHome(s.cfg)
	cmd.Stderr = w
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		// ollama serve's stdout holds only gin's per-request access
		// lines, which we log at debug; below that they go to /dev/null
		// rather than wake the log reader for every request.
		cmd.Stdout = w
	}
	cmd.SysProcAttr = childSysProcAttr()
	s.box.sysProcAttr(cmd.SysProcAttr)
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("spawn ollama: %w", err)
	}
	c := &child{
		pid:    cmd.Process.Pid,
		url:    &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)},
		exited: make(chan struct{}),
		logs:   make(chan struct{}),
		out:    r,
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	go func() {
		defer close(c.logs)
		pipeLogs(s.log.With("pid", c.pid), r)
	}()
	s.mu.Lock()
	s.port, s.pid = port, c.pid
	s.mu.Unlock()
	s.log.Info("ollama started", "pid", c.pid, "port", port, "bin", s.cfg.Bin)
	if err := s.writePidfile(c.pid); err != nil {
		s.stopChild(c, false)
		return nil, err
	}
	return c, nil
}

// stopChild ends c and everything in its process group and waits for its
// wait and log goroutines. graceful sends SIGTERM first and allows
// StopTimeout before SIGKILL.
func (s *Supervisor) stopChild(c *child, graceful bool) {
	if graceful {
		// Only the wait goroutine reaps the leader, right before exited
		// closes: until then the group id cannot have been reused.
		_ = syscall.Kill(-c.pid, syscall.SIGTERM)
		t := time.NewTimer(s.cfg.StopTimeout)
		select {
		case <-c.exited:
		case <-t.C:
			s.log.Warn("ollama ignored SIGTERM; killing", "pid", c.pid, "timeout", s.cfg.StopTimeout)
		}
		t.Stop()
	}
	select {
	case <-c.exited:
	default:
		_ = syscall.Kill(-c.pid, syscall.SIGKILL)
		<-c.exited
	}
	s.mu.Lock()
	s.pid = 0
	s.mu.Unlock()
	s.reapGroup(c.pid, false)

	t := time.NewTimer(s.cfg.StopTimeout)
	select {
	case <-c.logs:
	case <-t.C:
		// Something outside the group still holds the pipe: stop reading.
		s.log.Warn("ollama output still open after exit; closing", "pid", c.pid)
		c.out.Close()
		<-c.logs
	}
	t.Stop()
}

// reapGroup kills what is left of process group pgid (runners outlive a
// killed serve) and waits up to StopTimeout per signal for it to go.
// graceful sends SIGTERM before SIGKILL.
func (s *Supervisor) reapGroup(pgid int, graceful bool) {
	sigs := []syscall.Signal{syscall.SIGKILL}
	if graceful {
		sigs = []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}
	}
	for _, sig := range sigs {
		n, err := signalGroup(pgid, sig)
		if err != nil {
			s.log.Warn("ollama leftovers not killed", "pgid", pgid, "err", err)
			return
		}
		if n == 0 {
			return
		}
		s.log.Warn("killing ollama leftovers", "pgid", pgid, "processes", n, "signal", sig.String())
		if groupGone(pgid, s.cfg.StopTimeout) {
			return
		}
	}
	s.log.Error("ollama leftovers survived SIGKILL", "pgid", pgid)
}

func (s *Supervisor) pidfile() string { return filepath.Join(s.cfg.DataDir, "ollama.pid") }

// reapPidfile kills the process group a previous run recorded, if any of it
// is still alive, and removes the pidfile.
func (s *Supervisor) reapPidfile() {
	b, err := os.ReadFile(s.pidfile())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		s.log.Warn("read ollama pidfile", "err", err)
		return
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pgid <= 1 {
		s.log.Warn("bad ollama pidfile; ignoring", "path", s.pidfile())
	} else {
		s.reapGroup(pgid, true)
	}
	s.removePidfile()
}

// writePidfile records the child's process group atomically.
func (s *Supervisor) writePidfile(pgid int) error {
	if err := store.WriteFileAtomic(s.pidfile(), []byte(strconv.Itoa(pgid)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write ollama pidfile: %w", err)
	}
	return nil
}

func (s *Supervisor) removePidfile() {
	if err := os.Remove(s.pidfile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove ollama pidfile", "err", err)
	}
}
