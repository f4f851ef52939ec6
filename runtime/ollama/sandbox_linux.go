package ollama

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Isolation modes (Config.Isolation).
const (
	// IsolationNetns runs the child in a network namespace of its own:
	// its port exists only there, so no other local user can reach it.
	// Warden dials into the namespace; it needs root (CAP_SYS_ADMIN).
	IsolationNetns = "netns"
	// IsolationLoopback runs the child on a host loopback port, which
	// every local user can connect to.
	IsolationLoopback = "loopback"
	// IsolationAuto is netns when Warden runs as root, loopback otherwise.
	IsolationAuto = "auto"
)

// sandbox is how the child is isolated, decided by prepare and set up on
// the supervise thread by isolateThread.
type sandbox struct {
	mode string // IsolationNetns or IsolationLoopback

	// drop: the child runs as uid/gid (Warden is root and User is not
	// root), with no_new_privs and no capabilities.
	drop     bool
	user     string
	uid, gid uint32
	groups   []uint32 // the user's own supplementary groups (e.g. render for a GPU), never root's

	// In netns mode: the child's namespace and Warden's own, for dialing,
	// and the proxy that is the child's way out.
	netns, hostns *os.File
	egressLn      net.Listener
	egress        *egressProxy

	// nsMu guards the namespace handles: dials hold it shared while they
	// use them, close takes it whole, so no dial can enter (or fail to
	// leave) a namespace through a handle closed under it.
	nsMu     sync.RWMutex
	nsClosed bool
}

// String describes the isolation in force, for the log and preflight.
func (b *sandbox) String() string {
	if b == nil {
		return "none"
	}
	s := b.mode
	if b.drop {
		s += fmt.Sprintf(", user %s (uid %d), no_new_privs, no capabilities", b.user, b.uid)
	} else {
		s += ", same user as warden"
	}
	return s
}

// prepareSandbox decides the isolation from the config and the process's
// privileges, and, when the child drops to its own user, creates that user
// if missing and gives it its HOME and the models dir, and the data dir's
// group with traverse-only access (the keys, the audit keys and the
// database stay 0600 of Warden's user).
func (s *Supervisor) prepareSandbox() error {
	root := os.Geteuid() == 0
	b := &sandbox{mode: s.cfg.Isolation}
	switch b.mode {
	case "", IsolationAuto:
		b.mode = IsolationLoopback
		if root {
			b.mode = IsolationNetns
		}
	case IsolationNetns:
		if !root {
			return errors.New("runtime.isolation = \"netns\" needs warden to run as root (to enter the child's network namespace); use \"loopback\"")
		}
	case IsolationLoopback:
	default:
		return fmt.Errorf("runtime.isolation %q: want %q, %q or %q", b.mode, IsolationAuto, IsolationNetns, IsolationLoopback)
	}
	if root && s.cfg.User != "root" {
		u, err := lookupOrCreateUser(s.cfg.User, s.log)
		if err != nil {
			return err
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		if uid == 0 {
			return fmt.Errorf("runtime.user %q is uid 0: pick an unprivileged user", s.cfg.User)
		}
		b.drop, b.user, b.uid, b.gid = true, u.Username, uint32(uid), uint32(gid)
		b.groups = []uint32{}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != b.gid && g != 0 {
					b.groups = append(b.groups, uint32(g))
				}
			}
		}
		if err := b.giveDirs(s.cfg); err != nil {
			return err
		}
	}
	s.box = b
	return nil
}

// lookupOrCreateUser finds name, creating it as a system user without a
// home or a login shell when it does not exist.
func lookupOrCreateUser(name string, log *slog.Logger) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		return nil, fmt.Errorf("look up runtime.user %q: %w", name, err)
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		if u, lerr := user.Lookup(name); lerr == nil {
			return u, nil // another process created it meanwhile
		}
		return nil, fmt.Errorf("create runtime.user %q with useradd: %w: %s", name, err, out)
	}
	log.Info("created the backend's user", "user", name)
	return user.Lookup(name)
}

// giveDirs hands the child what it writes (its HOME; the models dir when it
// lives in the data dir, or is new) and lets it traverse the data dir by
// group. It checks that the child can reach the models dir and the binary.
func (b *sandbox) giveDirs(cfg Config) error {
	// The data dir: owner Warden's, group the child's, 0710.
	if err := os.Chown(cfg.DataDir, -1, int(b.gid)); err != nil {
		return fmt.Errorf("data dir group: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o710); err != nil {
		return fmt.Errorf("data dir mode: %w", err)
	}
	own := []string{childHome(cfg)}
	if inside(cfg.DataDir, cfg.ModelsDir) {
		own = append(own, cfg.ModelsDir)
	} else if _, err := os.Stat(cfg.ModelsDir); errors.Is(err, fs.ErrNotExist) {
		own = append(own, cfg.ModelsDir)
	}
	for _, d := range own {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := chownTree(d, b.uid, b.gid); err != nil {
			return fmt.Errorf("give %s to runtime.user: %w", d, err)
		}
	}
	for _, p := range []string{cfg.ModelsDir, childHome(cfg), cfg.Bin} {
		if err := b.reachable(p); err != nil {
			return err
		}
	}
	return nil
}

// inside reports whether p is dir or below it.
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}

// chownTree gives dir and everything below it to uid:gid and makes dir
// 0700; symlinks are not followed.
func chownTree(dir string, uid, gid uint32) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
	if err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// reachable checks that every directory above p lets the child's user
// search it, so the child does not fail later with a bare "permission
// denied"; the error names the directory and the fix.
func (b *sandbox) reachable(p string) error {
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		m := st.Mode().Perm()
		ok := m&0o001 != 0 || (sys.Gid == b.gid && m&0o010 != 0) || (sys.Uid == b.uid && m&0o100 != 0)
		if !ok {
			return fmt.Errorf("the backend's user %s cannot reach %s: %s is %v: let it search the directory (chmod o+x) or set runtime.user = \"root\"", b.user, p, dir, m)
		}
		if dir == "/" || dir == "." {
			return nil
		}
	}
}

// isolateThread sets up the calling thread, the supervise goroutine's
// locked thread that forks every child: no_new_privs when the child drops
// its user, and a new network namespace with loopback up in netns mode.
// It reports whether the thread was changed; a changed thread must never
// run other goroutines, so the caller exits with it still locked and the
// Go runtime ends it.
func (b *sandbox) isolateThread() (changed bool, err error) {
	if b == nil {
		return false, nil
	}
	if b.drop {
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
			return true, fmt.Errorf("no_new_privs: %w", e)
		}
		changed = true
	}
	if b.mode != IsolationNetns {
		return changed, nil
	}
	host, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return changed, fmt.Errorf("open network namespace: %w", err)
	}
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		host.Close()
		return changed, fmt.Errorf("new network namespace: %w", err)
	}
	changed = true
	if err := loopbackUp(); err != nil {
		host.Close()
		return changed, err
	}
	// Created on this thread, the listener is the namespace's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		host.Close()
		return changed, fmt.Errorf("egress proxy: %w", err)
	}
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		host.Close()
		ln.Close()
		return changed, fmt.Errorf("open child network namespace: %w", err)
	}
	b.netns, b.hostns, b.egressLn = ns, host, ln
	return changed, nil
}

// startEgress serves the child's way out (netns mode); close stops it.
func (b *sandbox) startEgress(log *slog.Logger) {
	if b != nil && b.egressLn != nil {
		b.egress = newEgressProxy(b.egressLn, log)
	}
}

// env is what the child's environment gets from the sandbox: the egress
// proxy in netns mode.
func (b *sandbox) env() []string {
	if b == nil || b.egress == nil {
		return nil
	}
	return b.egress.env()
}

const (
	prSetNoNewPrivs = 38     // PR_SET_NO_NEW_PRIVS
	siocgifflags    = 0x8913 // SIOCGIFFLAGS
	siocsifflags    = 0x8914 // SIOCSIFFLAGS
)

// ifreqFlags is struct ifreq with the flags member of its union.
type ifreqFlags struct {
	name  [16]byte
	flags uint16
	_     [22]byte
}

// loopbackUp brings lo up in the calling thread's network namespace (a new
// one has it down, and 127.0.0.1 cannot be bound).
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	defer syscall.Close(fd)
	var r ifreqFlags
	copy(r.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocgifflags, uintptr(unsafe.Pointer(&r))); e != 0 {
		return fmt.Errorf("loopback flags: %w", e)
	}
	r.flags |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocsifflags, uintptr(unsafe.Pointer(&r))); e != 0 {
		return fmt.Errorf("loopback up: %w", e)
	}
	return nil
}

// close releases the namespace handles.
func (b *sandbox) close() {
	if b != nil && b.egress != nil {
		b.egress.close()
	} else if b != nil && b.egressLn != nil {
		b.egressLn.Close()
	}
	if b != nil && b.netns != nil {
		b.nsMu.Lock()
		defer b.nsMu.Unlock()
		if !b.nsClosed {
			b.nsClosed = true
			b.netns.Close()
			b.hostns.Close()
		}
	}
}

// sysProcAttr adds the child's credentials to attr when it drops its user:
// its uid and gid, the supplementary groups the user has in /etc/group
// (none of Warden's), no ambient capabilities (a non-root uid keeps none
// across exec).
func (b *sandbox) sysProcAttr(attr *syscall.SysProcAttr) {
	if b != nil && b.drop {
		attr.Credential = &syscall.Credential{Uid: b.uid, Gid: b.gid, Groups: b.groups}
		attr.AmbientCaps = nil
	}
}

// dial connects to addr in the child's network namespace (netns mode) or
// in Warden's own. A socket belongs to the namespace it was created in, so
// a goroutine locked to its thread enters the child's namespace, creates
// and connects the socket there and comes back; if it cannot come back its
// thread is left locked and dies with it.
func (b *sandbox) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if b == nil || b.netns == nil {
		return childDialer.DialContext(ctx, network, addr)
	}
	b.nsMu.RLock()
	defer b.nsMu.RUnlock()
	if b.nsClosed {
		return nil, ErrStopped
	}
	return dialIn(ctx, b.netns, b.hostns, network, addr)
}

func dialIn(ctx context.Context, ns, host *os.File, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := setns(ns); err != nil {
			runtime.UnlockOSThread()
			res <- result{nil, fmt.Errorf("enter the backend's network namespace: %w", err)}
			return
		}
		c, err := childDialer.DialContext(ctx, network, addr)
		if rerr := setns(host); rerr != nil {
			if c != nil {
				c.Close()
			}
			res <- result{nil, fmt.Errorf("leave the backend's network namespace: %w", rerr)}
			return // still locked: the thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// ChildDialer returns a dial function that reaches the child of the
// `warden serve` using dataDir (found through its pidfile) when it runs in
// its own network namespace, and nil when it does not (or none runs):
// admin commands then dial as usual. The returned close releases the
// namespace handles.
func ChildDialer(dataDir string) (dial func(ctx context.Context, network, addr string) (net.Conn, error), closeFn func()) {
	b, err := os.ReadFile(filepath.Join(dataDir, "ollama.pid"))
	if err != nil {
		return nil, func() {}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil, func() {}
	}
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, func() {}
	}
	host, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		ns.Close()
		return nil, func() {}
	}
	closeFn = func() { ns.Close(); host.Close() }
	if sameFile(ns, host) {
		closeFn()
		return nil, func() {}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(ctx, ns, host, network, addr)
	}, closeFn
}

func sameFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
