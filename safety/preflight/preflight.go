// Package preflight holds the deployment checklist `warden preflight` runs
// and `serve --require-preflight` enforces: is the API exposed only as
// configured, are the logs forwarded off-host and intact, are the keys
// rotated and scoped, is the host locked down. Each check is a plain
// function over an Env the caller fills, so tests give passing and failing
// fixtures without touching the host.
package preflight

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store"
)

// Status is a check's verdict.
type Status string

// The verdicts: a fail stops `serve --require-preflight`; a warn is advice.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Statuses lists every status, for metrics that export one series each.
var Statuses = []Status{Pass, Warn, Fail}

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
}

// Report is a whole run.
type Report struct {
	Checks []Result  `json:"checks"`
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
}

// Failed returns the failed checks.
func (r Report) Failed() []Result {
	var out []Result
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// Sink is one [[audit.sink]] as far as reachability goes.
type Sink struct {
	Name    string
	Type    string // syslog | webhook
	Network string // tls | tcp | udp (syslog)
	Address string // host:port (syslog)
	URL     string // webhook
	// The TLS settings of a syslog sink with Network "tls": the check
	// completes a handshake as the sink would.
	CAFile, CertFile, KeyFile, ServerName string
	InsecureSkipVerify                    bool
}

// Env is everything the checks look at. Zero values mean "not known" and
// make the checks that need them say so.
type Env struct {
	// Server settings.
	Listen            string
	TLSCertFile       string // "" = TLS off
	Allow             []string
	InsecurePlaintext bool
	TrustedProxies    []string

	// Isolation is how the backend child is (or will be) isolated: "netns",
	// "loopback", "attached" (Warden did not start it).
	Isolation string
	// BackendPort is the child's port on the host (0: not running or not
	// on a host port).
	BackendPort int
	// ModelPorts are the ports other model servers answer on (Ollama's
	// 11434 by default).
	ModelPorts []int
	// LocalAddrs lists this host's non-loopback interface addresses.
	LocalAddrs func() ([]netip.Addr, error)
	// Dial connects with a short timeout (nil: net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HTTP sends the probes of other model servers and webhook sinks
	// (nil: a client with DialTimeout).
	HTTP *http.Client
	// DialTimeout bounds each connection attempt (0: 2s).
	DialTimeout time.Duration

	// Audit trail.
	Sinks        []Sink
	FailOpen     bool
	MaxOutboxLag time.Duration // 0: 5 minutes
	// Full verifies the whole chain instead of its tail.
	Full bool

	// ModelAllow is [models] allow (empty: every model).
	ModelAllow []string
	// GuardModel is [safety.guard] model ("": none); BackendModels lists
	// the backend's models (nil: no backend known).
	GuardModel    string
	BackendModels func(ctx context.Context) ([]string, error)

	// Keys.
	RotationMaxAge time.Duration
	UnusedAfter    time.Duration // 0: 90 days
	// UserLimits are the configured per-user defaults of delegate keys
	// ([limits.user]; the User* fields).
	UserLimits keys.Limits

	// Probes: a probe run older than ProbeMaxAge (0: 8 days) is stale; a
	// rate that rose by more than ProbeThreshold (0: 0.1) since the
	// previous run of its model is a regression.
	ProbeMaxAge    time.Duration
	ProbeThreshold float64

	// DB and DataDir are the data dir's database and path.
	DB      *store.DB
	DataDir string
	// SkipDirs are directories under DataDir whose files the permission
	// check leaves alone (the backend's models, owned by its user).
	SkipDirs []string

	// Host.
	EUID int // the running user
	// BackendPID is the child's pid; 0: this process (the child inherits
	// its cgroup).
	BackendPID int
	// ProcRoot and CgroupRoot are "/proc" and "/sys/fs/cgroup" on a host.
	ProcRoot   string
	CgroupRoot string
	// NTPSynchronized reports whether the clock is synchronised; reported
	// false when the host does not say.
	NTPSynchronized func(ctx context.Context) (synced, reported bool)

	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Env) timeout() time.Duration {
	if e.DialTimeout > 0 {
		return e.DialTimeout
	}
	return 2 * time.Second
}

func (e *Env) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	if e.Dial != nil {
		return e.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (e *Env) httpClient() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return &http.Client{Timeout: e.timeout(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Check is one named check.
type Check struct {
	Name string
	Run  func(ctx context.Context, e *Env) Result
}

// Checks returns every check in the order they print.
func Checks() []Check {
	return []Check{
		{"exposure.listen", checkListen},
		{"exposure.proxy", checkProxy},
		{"exposure.backend", checkBackend},
		{"exposure.other_model_servers", checkOtherModelServers},
		{"logs.sinks", checkSinks},
		{"logs.outbox_lag", checkOutboxLag},
		{"logs.chain", checkChain},
		{"logs.fail_open", checkFailOpen},
		{"keys.rotation", checkRotation},
		{"keys.admin_expiry", checkAdminExpiry},
		{"keys.model_restriction", checkModelRestriction},
		{"keys.unused", checkUnused},
		{"keys.delegate_user_limits", checkDelegateUserLimits},
		{"models.allowlist", checkModelAllowlist},
		{"models.guard", checkGuardModel},
		{"probes.recent", checkProbes},
		{"host.data_dir", checkDataDir},
		{"host.user", checkUser},
		{"host.backend_limits", checkBackendLimits},
		{"host.tls_certificate", checkTLSCert},
		{"host.clock", checkClock},
	}
}

// Run runs every check (they run one after another: a preflight is rare
// and its dials are short).
func Run(ctx context.Context, e *Env) Report {
	rep := Report{OK: true, At: e.now()}
	for _, c := range Checks() {
		r := c.Run(ctx, e)
		r.Name = c.Name
		if r.Status == Fail {
			rep.OK = false
		}
		rep.Checks = append(rep.Checks, r)
	}
	return rep
}

func pass(reason string) Result { return Result{Status: Pass, Reason: reason} }
func warn(reason, fix string) Result {
	return Result{Status: Warn, Reason: reason, Fix: fix}
}
func fail(reason, fix string) Result {
	return Result{Status: Fail, Reason: reason, Fix: fix}
}
