package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
)

// AuditConfig sets the audit trail.
type AuditConfig struct {
	// FailOpen serves requests whose records cannot be written. Off: Warden
	// answers 503 instead, as Vault does.
	FailOpen           bool          `toml:"fail_open"`
	StoreText          string        `toml:"store_text"` // none | full | redacted
	RetentionDays      int           `toml:"retention_days"`
	TextRetentionDays  int           `toml:"text_retention_days"`
	CheckpointEvery    int64         `toml:"checkpoint_every"`
	CheckpointInterval time.Duration `toml:"checkpoint_interval"`
	Sinks              []SinkConfig  `toml:"sink"`
}

// SinkConfig is one [[audit.sink]]: where records and checkpoints are
// forwarded off-host.
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
	// X-Warden-Signature); read at start.
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

func defaultAudit() AuditConfig {
	return AuditConfig{
		StoreText:          audit.StoreTextNone,
		RetentionDays:      30,
		TextRetentionDays:  7,
		CheckpointEvery:    1000,
		CheckpointInterval: time.Minute,
	}
}

func (a AuditConfig) validate(bad func(string, ...any)) {
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

// auditTrail is the running audit machinery of `warden serve`: the group
// commit writer, the refused-key aggregator, the outbox forwarding records
// and checkpoints off-host, and the retention loop. close stops them in
// order and waits for each.
type auditTrail struct {
	db       *store.DB
	alerting bool // some sink takes alerts
	log      *slog.Logger
	writer   *audit.Writer
	agg      *audit.Aggregator
	out      *outbox.Outbox
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func startAudit(ctx context.Context, cfg Config, db *store.DB, log *slog.Logger) (*auditTrail, error) {
	ac := cfg.Audit
	// A chain that does not verify is an incident, not a detail: refuse to
	// start rather than append to it. The check covers the newest signed
	// checkpoint and everything after it, so its cost does not grow with
	// the trail; `warden audit verify` walks all of it.
	rep, err := audit.VerifyTail(ctx, db, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("verify audit trail: %w", err)
	}
	if !rep.OK() {
		return nil, fmt.Errorf("audit trail in %s does not verify (%s): investigate with `warden audit verify`, restore a backup, or move the database aside", db.Path(), rep.Break)
	}

	sinks, topics, err := buildSinks(cfg)
	if err != nil {
		return nil, err
	}
	t := &auditTrail{db: db, log: log}
	forward := len(sinks) > 0
	alerting := slices.ContainsFunc(sinks, func(s outbox.Sink) bool {
		ts, ok := topics[s.Name()]
		return !ok || slices.Contains(ts, outbox.TopicAlert)
	})
	t.alerting = alerting
	t.writer = audit.NewWriter(db, audit.Config{
		DataDir:            cfg.DataDir,
		StoreText:          ac.StoreText,
		CheckpointEvery:    ac.CheckpointEvery,
		CheckpointInterval: ac.CheckpointInterval,
		OnCommit: func(tx *sql.Tx, recs []audit.StoredRecord) error {
			if !forward {
				return nil
			}
			msgs := make([]outbox.Message, 0, len(recs))
			for _, r := range recs {
				b, err := json.Marshal(r)
				if err != nil {
					return err
				}
				msgs = append(msgs, outbox.Message{Topic: outbox.TopicAudit, Body: b, Time: r.Time})
				if alerting {
					if a := safetyAlert(r); a != nil {
						msgs = append(msgs, *a)
					}
				}
			}
			return outbox.EnqueueTx(context.Background(), tx, msgs...)
		},
		OnCheckpoint: func(tx *sql.Tx, c audit.Checkpoint) error {
			if !forward {
				return nil
			}
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			return outbox.EnqueueTx(context.Background(), tx, outbox.Message{Topic: outbox.TopicCheckpoint, Body: b, Time: c.Time})
		},
	})
	if err := t.writer.Start(ctx); err != nil {
		return nil, fmt.Errorf("start audit writer: %w", err)
	}
	if err := forgetSinks(ctx, db, append(slices.Clip(ac.Sinks), cfg.Alerts.Sinks...), log); err != nil {
		_ = t.writer.Close(context.Background())
		return nil, err
	}
	if forward {
		t.out = outbox.New(db, sinks, outbox.Options{Poll: 500 * time.Millisecond, Logger: log.With("component", "outbox"), Topics: topics})
		if err := t.out.Start(ctx); err != nil {
			_ = t.writer.Close(context.Background())
			return nil, fmt.Errorf("start forwarding: %w", err)
		}
	}
	t.agg = audit.NewAggregator(t.writer)
	t.agg.Start()

	// The configuration this server runs with, in the chain.
	if err := t.recordConfig(ctx, cfg); err != nil {
		t.close(context.Background(), log)
		return nil, fmt.Errorf("audit trail not writable: %w", err)
	}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.stop = cancel
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.retain(rctx, db, cfg.DataDir, ac, log)
	}()
	return t, nil
}

// forgetSinks drops the delivery position of sinks no longer configured,
// which would otherwise hold back outbox pruning forever.
func forgetSinks(ctx context.Context, db *store.DB, configured []SinkConfig, log *slog.Logger) error {
	st, err := outbox.ReadStatus(ctx, db, time.Now())
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	keep := map[string]bool{}
	for _, s := range configured {
		keep[s.Name] = true
	}
	for _, s := range st {
		if !keep[s.Name] {
			if err := outbox.RemoveSink(ctx, db, s.Name); err != nil {
				return fmt.Errorf("forget sink %s: %w", s.Name, err)
			}
			log.Info("forwarding sink removed from the config; its position is forgotten", "sink", s.Name, "pending", s.Pending)
		}
	}
	return nil
}

// recordConfig appends a config record: a digest of the settings in force
// (the settings themselves may name files and hosts; the digest proves
// which configuration was running without exposing it).
func (t *auditTrail) recordConfig(ctx context.Context, cfg Config) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	detail, _ := json.Marshal(map[string]string{"event": "start", "version": Version, "config_sha256": hex.EncodeToString(sum[:])})
	_, err = t.writer.Append(ctx, audit.Record{Kind: audit.KindConfig, Detail: detail})
	return err
}

// retain exports the daily JSONL files, prunes records past retention and
// text past text retention, at start and then hourly.
func (t *auditTrail) retain(ctx context.Context, db *store.DB, dataDir string, ac AuditConfig, log *slog.Logger) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		now := time.Now()
		if err := audit.ExportDays(ctx, db, filepath.Join(dataDir, "audit"), now, ac.RetentionDays); err != nil && ctx.Err() == nil {
			log.Error("audit daily export", "err", err)
		}
		if n, err := audit.Prune(ctx, db, now.AddDate(0, 0, -ac.RetentionDays)); err != nil && ctx.Err() == nil {
			log.Error("audit retention", "err", err)
		} else if n > 0 {
			log.Info("audit retention: pruned records", "records", n, "retention_days", ac.RetentionDays)
		}
		// Forwarded rows every sink has taken are kept a day, then dropped.
		if _, err := outbox.Prune(ctx, db, now.Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Error("outbox retention", "err", err)
		}
		if n, err := audit.PurgeText(ctx, db, now.AddDate(0, 0, -ac.TextRetentionDays)); err != nil && ctx.Err() == nil {
			log.Error("audit text retention", "err", err)
		} else if n > 0 {
			log.Info("audit text retention: purged text", "records", n, "text_retention_days", ac.TextRetentionDays)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// close stops the aggregator (flushing its counts), the writer (committing
// what is queued), the outbox and the retention loop.
func (t *auditTrail) close(ctx context.Context, log *slog.Logger) {
	if t.stop != nil {
		t.stop()
	}
	t.wg.Wait()
	if err := t.agg.Close(ctx); err != nil {
		log.Error("audit aggregator", "err", err)
	}
	if err := t.writer.Close(ctx); err != nil {
		log.Error("audit writer", "err", err)
	}
	if t.out != nil {
		if err := t.out.Close(ctx); err != nil {
			log.Error("outbox", "err", err)
		}
	}
}
