package trail

import (
	"log/slog"
	"slices"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
)

// Config is what a Trail runs with. Audit and Alerts are the [audit] and
// [alerts] tables of the server's configuration file; the caller has
// validated them.
type Config struct {
	// DataDir holds the audit key files and the daily exports (audit/).
	DataDir string
	Audit   AuditConfig
	Alerts  AlertsConfig
	// StartConfig is the server's whole configuration and Version the
	// server's version: the start record holds the version and the SHA-256
	// of the configuration's JSON (the settings name files and hosts; the
	// digest proves which configuration ran without exposing them).
	StartConfig any
	Version     string
	// Logger receives the trail's errors and retention notes (nil =
	// discard).
	Logger *slog.Logger
	// Now is the clock for records, retention and alerts (nil = time.Now).
	Now func() time.Time
	// ConfigPath is the configuration file the server read ("" = the
	// built-in defaults); Start leaves it in the data dir (ServeConfigPath)
	// for admin commands that are given no configuration.
	ConfigPath string
}

// AuditConfig is the [audit] table: the audit trail's settings.
type AuditConfig struct {
	// FailOpen serves requests whose records cannot be written. Off: Warden
	// answers 503 instead, as Vault does.
	FailOpen           bool          `toml:"fail_open"`
	StoreText          string        `toml:"store_text"` // none | full | redacted
	RetentionDays      int           `toml:"retention_days"`
	TextRetentionDays  int           `toml:"text_retention_days"`
	CheckpointEvery    int64         `toml:"checkpoint_every"`
	CheckpointInterval time.Duration `toml:"checkpoint_interval"`
	// CommitDelay is how long a record may wait for the records of other
	// requests in flight so that one fsync commits them all (group
	// commit); a request alone never waits. 0 commits each at once.
	CommitDelay time.Duration `toml:"commit_delay"`
	// OutboxMaxBytes caps the bytes waiting in the outbox for the sinks.
	OutboxMaxBytes int64 `toml:"outbox_max_bytes"`
	// OutboxFull is what happens at the cap: "fail_closed" (requests get
	// 503 audit_unavailable until the sinks catch up) or "drop_oldest"
	// (the oldest undelivered messages go, and a chain record says which).
	OutboxFull string       `toml:"outbox_full"`
	Sinks      []SinkConfig `toml:"sink"`
}

// SinkConfig is one [[audit.sink]] or [[alerts.sink]]: where records,
// checkpoints and alerts are forwarded off-host.
type SinkConfig struct {
	Name               string            `toml:"name"`
	Type               string            `toml:"type"`    // syslog | webhook
	Network            string            `toml:"network"` // tls | tcp | udp (syslog)
	Address            string            `toml:"address"`
	CAFile             string            `toml:"ca_file"`
	CertFile           string            `toml:"cert_file"`
	KeyFile            string            `toml:"key_file"`
	ServerName         string            `toml:"server_name"`
	InsecureSkipVerify bool              `toml:"insecure_skip_verify"`
	URL                string            `toml:"url"`
	Headers            map[string]string `toml:"headers"`
	Timeout            time.Duration     `toml:"timeout"`
	AppName            string            `toml:"app_name"`
	Hostname           string            `toml:"hostname"`
	// Topics the sink takes: "audit", "checkpoint", "alert". Default: audit
	// and checkpoint for [[audit.sink]], alert for [[alerts.sink]].
	Topics []string `toml:"topics"`
	// SecretFile holds the key that signs webhook bodies (HMAC-SHA256 in
	// X-Warden-Signature); read at New.
	SecretFile string `toml:"secret_file"`
}

func (s SinkConfig) outbox() outbox.SinkConfig {
	return outbox.SinkConfig{
		Name: s.Name, Type: s.Type, Network: s.Network, Address: s.Address,
		CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile, ServerName: s.ServerName,
		InsecureSkipVerify: s.InsecureSkipVerify, URL: s.URL, Headers: s.Headers,
		Timeout: s.Timeout, AppName: s.AppName, Hostname: s.Hostname,
	}
}

// defaultCommitDelay is audit.commit_delay's default: a record waits at
// most this long for company, and only while other requests are open.
const defaultCommitDelay = 2 * time.Millisecond

// maxCommitDelay bounds audit.commit_delay: every answer under load may
// wait this long for its record.
const maxCommitDelay = 100 * time.Millisecond

// DefaultAudit is the [audit] table's defaults: hashes only, records kept
// 30 days.
func DefaultAudit() AuditConfig {
	return AuditConfig{
		StoreText:          audit.StoreTextNone,
		RetentionDays:      30,
		TextRetentionDays:  7,
		CheckpointEvery:    1000,
		CheckpointInterval: time.Minute,
		CommitDelay:        defaultCommitDelay,
		OutboxMaxBytes:     outbox.DefaultMaxBytes,
		OutboxFull:         outbox.FullFailClosed,
	}
}

// Validate reports each bad setting to bad.
func (a AuditConfig) Validate(bad func(string, ...any)) {
	switch a.StoreText {
	case audit.StoreTextNone, audit.StoreTextFull, audit.StoreTextRedacted:
	default:
		bad("audit.store_text must be none, full or redacted, got %q", a.StoreText)
	}
	if a.RetentionDays < 1 {
		bad("audit.retention_days must be at least 1, got %d", a.RetentionDays)
	}
	if a.TextRetentionDays < 0 {
		bad("audit.text_retention_days must not be negative")
	}
	if a.CheckpointEvery < 1 || a.CheckpointInterval <= 0 {
		bad("audit.checkpoint_every and audit.checkpoint_interval must be positive")
	}
	if a.CommitDelay < 0 || a.CommitDelay > maxCommitDelay {
		bad("audit.commit_delay must be between 0 and %s, got %s", maxCommitDelay, a.CommitDelay)
	}
	if a.OutboxMaxBytes < 4096 {
		bad("audit.outbox_max_bytes must be at least 4096, got %d", a.OutboxMaxBytes)
	}
	switch a.OutboxFull {
	case outbox.FullFailClosed, outbox.FullDropOldest:
	default:
		bad("audit.outbox_full must be fail_closed or drop_oldest, got %q", a.OutboxFull)
	}
	names := map[string]bool{}
	for i, s := range a.Sinks {
		if names[s.Name] {
			bad("audit.sink[%d]: name %q used twice", i, s.Name)
		}
		names[s.Name] = true
		if _, err := outbox.NewSink(s.outbox()); err != nil {
			bad("audit.sink[%d]: %v", i, err)
		}
	}
}

// AlertsConfig is the [alerts] table: where alerts go. An alert is a
// safety finding that was flagged or blocked, or a GPU limit crossed or
// cleared. Alerts travel through the same outbox as forwarded audit
// records: committed with the record that caused them, delivered at least
// once with backoff, never on a request's critical path.
type AlertsConfig struct {
	Sinks []SinkConfig `toml:"sink"`
}

// Validate reports each bad setting to bad; audit is [[audit.sink]], whose
// names the alert sinks must not reuse.
func (a AlertsConfig) Validate(audit []SinkConfig, bad func(string, ...any)) {
	names := map[string]bool{}
	for _, s := range audit {
		names[s.Name] = true
	}
	for i, s := range a.Sinks {
		if names[s.Name] {
			bad("alerts.sink[%d]: name %q already used by another sink", i, s.Name)
		}
		names[s.Name] = true
		if _, err := outbox.NewSink(s.outbox()); err != nil {
			bad("alerts.sink[%d]: %v", i, err)
		}
	}
	for i, s := range append(slices.Clip(audit), a.Sinks...) {
		for _, t := range s.Topics {
			switch t {
			case outbox.TopicAudit, outbox.TopicCheckpoint, outbox.TopicAlert:
			default:
				bad("sink %d (%q): unknown topic %q (want audit, checkpoint or alert)", i, s.Name, t)
			}
		}
	}
}
