package ollama

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/warden-llm/warden/internal/testenv"
)

// otherUser is a second local user the tests create, standing for any
// other account on the host.
const otherUser = "warden-test-other"

// The child, started by a root Warden, runs in a network namespace of its
// own as the dedicated user, with no_new_privs and no capabilities; its
// port cannot be reached from the host's network namespace, by root or by
// another local user, while Warden reaches it; it cannot read Warden's
// key files and database; its models dir is 0700 and its own.
func TestSupervisorIsolatesChild(t *testing.T) {
	testenv.NeedRoot(t, "the child's own network namespace and user")
	cfg, logs := testConfig(t)
	admin := filepath.Join(cfg.DataDir, "admin.key")
	writeFile(t, admin, "secret\n")
	db := filepath.Join(cfg.DataDir, "warden.db")
	writeFile(t, db, "db\n")
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	if got := s.Isolation(); !strings.HasPrefix(got, "netns, user "+DefaultUser) {
		t.Errorf("Isolation() = %q, want netns and user %s", got, DefaultUser)
	}
	u, err := user.Lookup(DefaultUser)
	if err != nil {
		t.Fatal(err)
	}
	pid := s.PID()

	// Its credentials, capabilities and no_new_privs.
	st := procStatus(t, pid)
	for _, f := range []string{"Uid", "Gid"} {
		want := u.Uid
		if f == "Gid" {
			want = u.Gid
		}
		for _, id := range strings.Fields(st[f]) {
			if id != want {
				t.Errorf("child %s = %q, want %s everywhere", f, st[f], want)
				break
			}
		}
	}
	if st["Groups"] != "" {
		t.Errorf("child supplementary groups %q, want none", st["Groups"])
	}
	for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if st[f] != "0000000000000000" {
			t.Errorf("child %s = %s, want none", f, st[f])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("child NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}

	// Its network namespace is not ours, and Warden reaches it there.
	// /proc/self is the main thread's, which may be the supervise thread:
	// read this thread's.
	runtime.LockOSThread()
	mine, _ := os.Readlink("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil || theirs == mine {
		t.Errorf("child network namespace %q (%v), ours %q: want its own", theirs, err, mine)
	}
	if v := getVersion(t, s); !strings.Contains(v, `"version"`) {
		t.Errorf("/api/version through the namespace = %q", v)
	}
	addr := s.URL().Host
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("root in the host's namespace connected to the child at %s", addr)
	}
	other := ensureUser(t, otherUser)
	// The probe works: as the other user it reaches a host listener...
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if out, err := asUser(other, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port(ln.Addr().String())).CombinedOutput(); err != nil {
		t.Fatalf("the other user cannot reach a host listener, so the probe proves nothing: %v %s", err, out)
	}
	// ...but not the child.
	if out, err := asUser(other, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+port(addr)).CombinedOutput(); err == nil {
		t.Errorf("user %s connected to the child's port %s", otherUser, addr)
	} else if !strings.Contains(string(out), "refused") {
		t.Logf("the other user's connection failed: %s", out)
	}

	// It cannot read Warden's files; its models dir is its own and 0700.
	child := &user.User{Uid: u.Uid, Gid: u.Gid}
	for _, p := range []string{admin, db} {
		if out, err := asUser(child, "cat", p).CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("child user reading %s: %v %q, want permission denied", p, err, out)
		}
	}
	fi, err := os.Stat(cfg.ModelsDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != u.Uid {
		t.Errorf("models dir mode %v owner %d, want 0700 owned by %s", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, u.Uid)
	}
	if _, err := os.Stat(filepath.Join(cfg.ModelsDir, "blobs")); err != nil {
		t.Errorf("the child did not create models/blobs: %v", err)
	}
}

// In loopback isolation the child keeps a host loopback port (what Warden
// falls back to when not root); it still runs as its own user.
func TestSupervisorLoopbackIsolation(t *testing.T) {
	testenv.NeedRoot(t, "the child's own user")
	cfg, logs := testConfig(t)
	cfg.Isolation = IsolationLoopback
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	if got := s.Isolation(); !strings.HasPrefix(got, "loopback, user "+DefaultUser) {
		t.Errorf("Isolation() = %q", got)
	}
	c, err := net.Dial("tcp", s.URL().Host)
	if err != nil {
		t.Fatalf("loopback child not on the host's loopback: %v", err)
	}
	c.Close()
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// ensureUser returns name, creating it as a system user if missing.
func ensureUser(t *testing.T, name string) *user.User {
	t.Helper()
	u, err := lookupOrCreateUser(name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// asUser returns a command that runs as u with no supplementary groups.
func asUser(u *user.User, name string, args ...string) *exec.Cmd {
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=" + childPath}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// In netns isolation the child still pulls: its requests out go through
// the egress proxy. A registry stub on a host address sees the child's
// manifest request (and answers 404, which the pull reports).
func TestSupervisorNetnsChildPullsThroughEgress(t *testing.T) {
	testenv.NeedRoot(t, "the child's own network namespace")
	ip := hostIP(t)
	asked := make(chan string, 1)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	reg := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r.URL.Path:
		default:
		}
		http.NotFound(w, r)
	})}
	go func() { _ = reg.Serve(ln) }()
	defer reg.Close()

	cfg, logs := testConfig(t)
	s := NewSupervisor(cfg)
	t.Cleanup(func() { closeSupervisor(t, s) })
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: s.DialContext}}
	body := `{"model":"` + ln.Addr().String() + `/library/x:latest","insecure":true,"stream":false}`
	resp, err := hc.Post(s.URL().JoinPath("/api/pull").String(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case p := <-asked:
		if !strings.Contains(p, "/v2/library/x/manifests/latest") {
			t.Errorf("registry asked for %q, want the manifest", p)
		}
	default:
		t.Errorf("the registry was never asked; pull answered %d %s", resp.StatusCode, out)
	}
}

// hostIP returns a non-loopback IPv4 address of this host: the child's
// proxy is bypassed for loopback names, as Go's proxy rules say.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address to put a registry on")
	return ""
}

func TestSandboxSettings(t *testing.T) {
	dir := t.TempDir()
	s := NewSupervisor(Config{Bin: "/bin/false", DataDir: dir, ModelsDir: filepath.Join(dir, "models"), Isolation: "bogus"})
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "runtime.isolation") {
		t.Errorf("Start with isolation bogus = %v, want a runtime.isolation error", err)
	}
	if os.Geteuid() == 0 {
		s := NewSupervisor(Config{Bin: "/bin/false", DataDir: dir, ModelsDir: filepath.Join(dir, "models"), User: "root", Isolation: IsolationLoopback})
		_ = s.Start(t.Context()) // /bin/false exits; the sandbox was decided before
		if got := s.Isolation(); got != "loopback, same user as warden" {
			t.Errorf("Isolation() with user root = %q", got)
		}
	}
	for _, tc := range []struct {
		dir, p string
		want   bool
	}{
		{"/d", "/d/models", true},
		{"/d", "/d", true},
		{"/d", "/d/../e", false},
		{"/d", "/dm", false},
		{"/d", "/e/models", false},
	} {
		if got := inside(tc.dir, tc.p); got != tc.want {
			t.Errorf("inside(%q, %q) = %v, want %v", tc.dir, tc.p, got, tc.want)
		}
	}
}
