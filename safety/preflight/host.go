package preflight

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirTraverse is the group execute bit the netns sandbox gives the data dir
// so the child's user can reach its own folders (see runtime/ollama).
const dirTraverse = 0o010

func checkDataDir(_ context.Context, e *Env) Result {
	if e.DataDir == "" {
		return warn("no data dir given", "")
	}
	st, err := os.Stat(e.DataDir)
	if err != nil {
		return fail("data dir: "+err.Error(), "run `warden serve` once to create it, or fix data_dir")
	}
	var bad []string
	if m := st.Mode().Perm(); m&^(0o700|dirTraverse) != 0 {
		bad = append(bad, fmt.Sprintf("%s is %s", e.DataDir, m))
	}
	if uid, ok := owner(st); ok && uid != e.EUID {
		bad = append(bad, fmt.Sprintf("%s is owned by uid %d", e.DataDir, uid))
	}
	skip := map[string]bool{}
	for _, d := range e.SkipDirs {
		skip[filepath.Clean(d)] = true
	}
	_ = filepath.WalkDir(e.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", p, err))
			return nil
		}
		if d.IsDir() {
			if skip[filepath.Clean(p)] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || len(bad) >= 5 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		m := info.Mode().Perm()
		// Certificates are public: `warden tls init` writes them 0644.
		public := strings.HasSuffix(p, ".pem") && !strings.Contains(filepath.Base(p), "key")
		if (public && m&0o022 != 0) || (!public && m&0o077 != 0) {
			bad = append(bad, fmt.Sprintf("%s is %s", p, m))
		}
		if uid, ok := owner(info); ok && uid != e.EUID {
			bad = append(bad, fmt.Sprintf("%s is owned by uid %d", p, uid))
		}
		return nil
	})
	if len(bad) > 0 {
		return fail("the data dir is open to other users or owned by another: "+strings.Join(bad, "; "),
			fmt.Sprintf("chmod 700 %s, chmod 600 its files, and chown them to the user that runs Warden (uid %d)", e.DataDir, e.EUID))
	}
	return pass(fmt.Sprintf("%s and its files are private to uid %d", e.DataDir, e.EUID))
}

func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

func checkUser(_ context.Context, e *Env) Result {
	if e.EUID == 0 {
		return warn("Warden runs as root: the backend child is isolated (its own network namespace, runtime.user), but a flaw in Warden itself would hold root",
			"run it as the warden system user (scripts/systemd/warden.service); it then uses loopback isolation for the child")
	}
	return pass(fmt.Sprintf("Warden runs as uid %d, not root", e.EUID))
}

// limits is what a cgroup allows: "" when no ceiling was found.
type limits struct {
	memory, cpu string
	version     string
	where       string
}

func checkBackendLimits(_ context.Context, e *Env) Result {
	pid := "self"
	who := "this process (the backend child inherits its cgroup)"
	if e.BackendPID > 0 {
		pid, who = strconv.Itoa(e.BackendPID), fmt.Sprintf("the backend child (pid %d)", e.BackendPID)
	}
	proc, root := e.ProcRoot, e.CgroupRoot
	if proc == "" {
		proc = "/proc"
	}
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	l, err := readLimits(filepath.Join(proc, pid, "cgroup"), root)
	if err != nil {
		return warn("cannot read the cgroup of "+who+": "+err.Error(), "")
	}
	fix := "set MemoryMax= and CPUQuota= on the service (scripts/systemd/warden.service), or run Warden in a cgroup with memory and CPU limits"
	found := fmt.Sprintf("cgroup %s %s: memory %s, cpu %s", l.version, l.where, orNone(l.memory), orNone(l.cpu))
	if l.memory == "" || l.cpu == "" {
		return warn(who+" has no memory or CPU ceiling: "+found, fix)
	}
	return pass(who + " is limited: " + found)
}

func orNone(s string) string {
	if s == "" {
		return "unlimited"
	}
	return s
}

// readLimits reads a /proc/<pid>/cgroup file and the limits of that cgroup
// and its ancestors under root (the tightest wins; it only reads).
func readLimits(procCgroup, root string) (limits, error) {
	f, err := os.Open(procCgroup)
	if err != nil {
		return limits{}, err
	}
	defer f.Close()
	var l limits
	var v2path string
	v1 := map[string]string{} // controller → path
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return limits{}, err
	}
	if p, ok := v1["memory"]; ok {
		l.version, l.where = "v1", p
		l.memory = tightest(root, v1dir(root, "memory", p), "memory.limit_in_bytes", v1Memory)
		if cp, ok := v1["cpu"]; ok {
			l.cpu = tightest(root, v1dir(root, "cpu", cp), "cpu.cfs_quota_us", v1CPU(root, cp))
		}
		return l, nil
	}
	if v2path == "" {
		return limits{}, errors.New("no cgroup found")
	}
	l.version, l.where = "v2", v2path
	dir := filepath.Join(root, v2path)
	l.memory = tightest(root, dir, "memory.max", func(s string) string {
		if s == "max" {
			return ""
		}
		return s + " bytes"
	})
	l.cpu = tightest(root, dir, "cpu.max", func(s string) string {
		if strings.HasPrefix(s, "max") {
			return ""
		}
		return s + " (quota period, µs)"
	})
	return l, nil
}

// v1dir finds a v1 controller's mount: "memory", or a joint mount such as
// "cpu,cpuacct".
func v1dir(root, controller, p string) string {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		for c := range strings.SplitSeq(e.Name(), ",") {
			if c == controller {
				return filepath.Join(root, e.Name(), p)
			}
		}
	}
	return filepath.Join(root, controller, p)
}

func v1Memory(s string) string {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n >= 1<<62 {
		return ""
	}
	return strconv.FormatUint(n, 10) + " bytes"
}

func v1CPU(root, p string) func(string) string {
	return func(s string) string {
		if s == "-1" || s == "" {
			return ""
		}
		period := "?"
		if b, err := os.ReadFile(filepath.Join(v1dir(root, "cpu", p), "cpu.cfs_period_us")); err == nil {
			period = strings.TrimSpace(string(b))
		}
		return s + " " + period + " (quota period, µs)"
	}
}

// tightest reads file in dir and each parent up to root, returning the
// first limit found walking up (a child cgroup cannot exceed its parent,
// and the nearest set limit is the one operators configured).
func tightest(root, dir, file string, parse func(string) string) string {
	root = filepath.Clean(root)
	for d := filepath.Clean(dir); d == root || strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, file)); err == nil {
			if v := parse(strings.TrimSpace(string(b))); v != "" {
				return v
			}
		}
		if d == root {
			break
		}
	}
	return ""
}

func checkTLSCert(_ context.Context, e *Env) Result {
	if e.TLSCertFile == "" {
		if isLoopback(e.Listen) {
			return pass("TLS is off and the API is on loopback only")
		}
		return warn("TLS is off (plain HTTP behind a proxy): check the proxy's certificate yourself", "")
	}
	b, err := os.ReadFile(e.TLSCertFile)
	if err != nil {
		return fail("read server.tls.cert_file: "+err.Error(), "`warden tls renew` issues a new certificate")
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return fail(e.TLSCertFile+" holds no PEM certificate", "`warden tls renew` issues a new certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fail("parse "+e.TLSCertFile+": "+err.Error(), "`warden tls renew` issues a new certificate")
	}
	left := cert.NotAfter.Sub(e.now())
	if left < 14*24*time.Hour {
		return fail(fmt.Sprintf("the server certificate expires %s (%s left, under 14 days)", cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour)),
			"`warden tls renew`, then SIGHUP the server (it also reloads when the file changes)")
	}
	return pass(fmt.Sprintf("the server certificate is valid until %s", cert.NotAfter.UTC().Format(time.DateOnly)))
}

func checkClock(ctx context.Context, e *Env) Result {
	if e.NTPSynchronized == nil {
		return warn("clock synchronisation not reported", "")
	}
	synced, reported := e.NTPSynchronized(ctx)
	switch {
	case !reported:
		return warn("clock synchronisation not reported by this host", "run an NTP client (systemd-timesyncd, chrony) so record times and certificates can be trusted")
	case !synced:
		return fail("the clock is not synchronised: audit record times and certificate checks are off",
			"enable NTP: `timedatectl set-ntp true` (or chrony)")
	}
	return pass("the clock is synchronised (NTP)")
}

// TimedatectlNTP asks systemd whether the clock is synchronised; hosts
// without timedatectl (or its daemon) do not report.
func TimedatectlNTP(ctx context.Context) (synced, reported bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "timedatectl", "show", "-p", "NTPSynchronized", "--value").Output()
	if err != nil {
		return false, false
	}
	switch strings.TrimSpace(string(out)) {
	case "yes":
		return true, true
	case "no":
		return false, true
	}
	return false, false
}
