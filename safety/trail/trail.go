// Package trail runs the audit trail of `warden serve`: the group commit
// writer, the refused-key aggregator, the outbox that forwards records,
// checkpoints and alerts off-host, the start record and the hourly
// retention loop (daily export, pruning, text purge). It composes
// safety/audit and safety/outbox, which know nothing of each other.
package trail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/store"
)

// Trail is the running audit machinery. New builds it, Start runs it and
// Close stops its parts in order, waiting for each.
type Trail struct {
	db       *store.DB
	cfg      Config
	start    []byte // StartConfig's JSON
	log      *slog.Logger
	now      func() time.Time
	sinks    []outbox.Sink
	topics   map[string][]string
	alerting bool // some sink takes alerts
	writer   *audit.Writer
	agg      *audit.Aggregator
	out      *outbox.Outbox
	stop     context.CancelFunc
	wg       sync.WaitGroup

	lastIntegrity time.Time // owned by the retention loop

	closeOnce sync.Once
	closeErr  error
}

// New returns the trail over db, with its sinks built (their secret files
// read) and its writer made; Start runs them.
func New(db *store.DB, cfg Config) (*Trail, error) {
	t := &Trail{db: db, cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	if cfg.Logger != nil {
		forwardLog.Store(cfg.Logger.With("component", "outbox"))
	}
	var err error
	if t.start, err = json.Marshal(cfg.StartConfig); err != nil {
		return nil, fmt.Errorf("audit trail: encode the configuration: %w", err)
	}
	if t.sinks, t.topics, err = buildSinks(cfg); err != nil {
		return nil, err
	}
	t.alerting = slices.ContainsFunc(t.sinks, func(s outbox.Sink) bool {
		ts, ok := t.topics[s.Name()]
		return !ok || slices.Contains(ts, outbox.TopicAlert)
	})
	// Forwarding is not configured here: the forwarder this package
	// installs (forward.go) enqueues in every chain write's transaction.
	t.writer = audit.NewWriter(db, audit.Config{
		DataDir:            cfg.DataDir,
		StoreText:          cfg.Audit.StoreText,
		CheckpointEvery:    cfg.Audit.CheckpointEvery,
		CheckpointInterval: cfg.Audit.CheckpointInterval,
		CommitDelay:        cfg.Audit.CommitDelay,
		Now:                cfg.Now,
	})
	t.agg = audit.NewAggregator(t.writer)
	t.agg.Now = cfg.Now
	return t, nil
}

// Writer is the trail's audit writer: the server appends its request and
// completion records through it.
func (t *Trail) Writer() *audit.Writer { return t.writer }

// OutboxState reads the outbox's fill level, cap and drop count.
func (t *Trail) OutboxState(ctx context.Context) (outbox.State, error) {
	return outbox.ReadState(ctx, t.db)
}

// Refused counts a request refused for a bad key, from ip; the aggregator
// appends one auth_refused record per client IP and minute.
func (t *Trail) Refused(ip string) { t.agg.Refused(ip) }

// RequestRefused counts a request of keyID answered with status before it
// reached the model; the aggregator appends one request_refused record per
// key and minute.
func (t *Trail) RequestRefused(keyID, ip string, status int) {
	t.agg.RequestRefused(keyID, ip, status)
}

// Start verifies the chain's tail, starts the writer, forgets the delivery
// position of sinks no longer configured, starts forwarding and the
// aggregator, appends the start record and starts the retention loop. On
// error it stops what it started.
func (t *Trail) Start(ctx context.Context) error {
	// A damaged file is refused before anything reads the chain from it:
	// serving on it would append to a trail nobody can verify.
	if err := t.db.Check(ctx, false); err != nil {
		return fmt.Errorf("%w: restore the newest backup made by `warden backup` (stop warden, move %s and its -wal and -shm files aside, copy the backup in its place), then check it with `warden audit verify --full`", err, t.db.Path())
	}
	// Records a sink or a daily export already holds that the chain no
	// longer has (a crash lost committed rows): the next records would
	// reuse their numbers with other hashes.
	gap, err := FindGap(ctx, t.db, t.cfg.DataDir)
	if err != nil {
		return err
	}
	if gap.Found() {
		return fmt.Errorf("%w: %s; run `warden audit ack-gap` to record the gap in the chain and continue above seq %d", ErrGap, gap, gap.Seen)
	}
	maxBytes, full := t.cfg.Audit.OutboxMaxBytes, t.cfg.Audit.OutboxFull
	if maxBytes == 0 {
		maxBytes = outbox.DefaultMaxBytes
	}
	if full == "" {
		full = outbox.FullFailClosed
	}
	if err := outbox.SetLimits(ctx, t.db, maxBytes, full); err != nil {
		return err
	}

	// A chain that does not verify is an incident, not a detail: refuse to
	// start rather than append to it. The check covers the newest signed
	// checkpoint and everything after it, so its cost does not grow with
	// the trail; `warden audit verify` walks all of it.
	rep, err := audit.VerifyTail(ctx, t.db, t.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("verify audit trail: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("audit trail in %s does not verify (%s): investigate with `warden audit verify`, restore a backup, or move the database aside", t.db.Path(), rep.Break)
	}

	if err := t.writer.Start(ctx); err != nil {
		return fmt.Errorf("start audit writer: %w", err)
	}
	if err := t.forgetSinks(ctx); err != nil {
		_ = t.writer.Close(context.Background())
		return err
	}
	if len(t.sinks) > 0 {
		t.out = outbox.New(t.db, t.sinks, outbox.Options{Poll: 500 * time.Millisecond, Logger: t.log.With("component", "outbox"), Topics: t.topics})
		if err := t.out.Start(ctx); err != nil {
			_ = t.writer.Close(context.Background())
			return fmt.Errorf("start forwarding: %w", err)
		}
	}
	t.agg.Start()

	// The configuration this server runs with, in the chain.
	if err := t.recordConfig(ctx); err != nil {
		if cerr := t.Close(context.Background()); cerr != nil {
			t.log.Error("close audit trail", "err", cerr)
		}
		return fmt.Errorf("audit trail not writable: %w", err)
	}

	if err := store.WriteFileAtomic(filepath.Join(t.cfg.DataDir, serveConfigFile), []byte(t.cfg.ConfigPath+"\n"), 0o600); err != nil {
		t.log.Warn("could not note the configuration file in the data dir", "err", err)
	}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.stop = cancel
	t.wg.Go(func() { t.retain(rctx) })
	return nil
}

// forgetSinks drops the delivery position of sinks no longer configured,
// which would otherwise hold back outbox pruning forever.
func (t *Trail) forgetSinks(ctx context.Context) error {
	st, err := outbox.ReadStatus(ctx, t.db, t.now())
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	keep := map[string]bool{}
	for _, s := range append(slices.Clip(t.cfg.Audit.Sinks), t.cfg.Alerts.Sinks...) {
		keep[s.Name] = true
	}
	for _, s := range st {
		if !keep[s.Name] {
			if err := outbox.RemoveSink(ctx, t.db, s.Name); err != nil {
				return fmt.Errorf("forget sink %s: %w", s.Name, err)
			}
			t.log.Info("forwarding sink removed from the config; its position is forgotten", "sink", s.Name, "pending", s.Pending)
		}
	}
	return nil
}

// serveConfigFile, in the data dir, names the configuration file the
// server last started with.
const serveConfigFile = "serve-config-path"

// ServeConfigPath returns the configuration file the server last started
// with on dataDir ("" when it ran on the built-in defaults or never ran).
func ServeConfigPath(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, serveConfigFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recordConfig appends a config record: the version and a digest of the
// settings in force.
func (t *Trail) recordConfig(ctx context.Context) error {
	sum := sha256.Sum256(t.start)
	detail, _ := json.Marshal(map[string]string{"event": "start", "version": t.cfg.Version, "config_sha256": hex.EncodeToString(sum[:])})
	_, err := t.writer.Append(ctx, audit.Record{Kind: audit.KindConfig, Detail: detail})
	return err
}

// retain runs retainOnce at start and then hourly, until ctx is done.
func (t *Trail) retain(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		t.retainOnce(ctx, t.now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// retainOnce exports the daily JSONL files, prunes records and day and
// month usage past retention, forwarded rows every sink has taken after a day, and text past text
// retention. Errors are logged: the next hour tries again.
func (t *Trail) retainOnce(ctx context.Context, now time.Time) {
	ac := t.cfg.Audit
	if now.Sub(t.lastIntegrity) >= IntegrityEvery {
		t.lastIntegrity = now
		t.checkIntegrity(ctx)
	}
	if err := audit.ExportDays(ctx, t.db, filepath.Join(t.cfg.DataDir, "audit"), now, ac.RetentionDays); err != nil && ctx.Err() == nil {
		t.log.Error("audit daily export", "err", err)
	}
	if n, err := audit.Prune(ctx, t.db, now.AddDate(0, 0, -ac.RetentionDays)); err != nil && ctx.Err() == nil {
		t.log.Error("audit retention", "err", err)
	} else if n > 0 {
		t.log.Info("audit retention: pruned records", "records", n, "retention_days", ac.RetentionDays)
	}
	// Usage rows name end users as the records do: kept as long.
	if n, err := quota.PruneUsage(ctx, t.db, now.AddDate(0, 0, -ac.RetentionDays)); err != nil && ctx.Err() == nil {
		t.log.Error("usage retention", "err", err)
	} else if n > 0 {
		t.log.Info("usage retention: pruned day and month usage", "rows", n, "retention_days", ac.RetentionDays)
	}
	// Forwarded rows every sink has taken are kept a day, then dropped.
	if _, err := outbox.Prune(ctx, t.db, now.Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
		t.log.Error("outbox retention", "err", err)
	}
	if n, err := audit.PurgeText(ctx, t.db, now.AddDate(0, 0, -ac.TextRetentionDays)); err != nil && ctx.Err() == nil {
		t.log.Error("audit text retention", "err", err)
	} else if n > 0 {
		t.log.Info("audit text retention: purged text", "records", n, "text_retention_days", ac.TextRetentionDays)
	}
}

// IntegrityEvery is how often the retention loop runs PRAGMA
// integrity_check on the database (and at the loop's first pass).
const IntegrityEvery = 24 * time.Hour

// AlertKindDatabase is the kind of the alert raised when the scheduled
// integrity check finds the database damaged.
const AlertKindDatabase = "database_damaged"

// checkIntegrity runs the full integrity check; a damaged file is logged
// and alerted (the alert may not commit on a badly damaged file: the log
// line is the fallback).
func (t *Trail) checkIntegrity(ctx context.Context) {
	err := t.db.Check(ctx, true)
	if err == nil || ctx.Err() != nil {
		return
	}
	t.log.Error("database integrity check failed: restore the newest backup made by `warden backup`", "err", err)
	b, jerr := json.Marshal(struct {
		Active  bool      `json:"active"`
		Kind    string    `json:"kind"`
		Message string    `json:"message"`
		Time    time.Time `json:"time"`
	}{true, AlertKindDatabase, err.Error() + ": restore the newest backup made by `warden backup`", t.now().UTC()})
	if jerr != nil {
		return
	}
	t.enqueueAlert(ctx, AlertKindDatabase, b)
}

// Close stops the retention loop, the aggregator (flushing its counts),
// the writer (committing what is queued) and the outbox, in that order,
// and returns their errors. Calls after the first return its result.
func (t *Trail) Close(ctx context.Context) error {
	t.closeOnce.Do(func() { t.closeErr = t.close(ctx) })
	return t.closeErr
}

func (t *Trail) close(ctx context.Context) error {
	if t.stop != nil {
		t.stop()
	}
	t.wg.Wait()
	var errs []error
	if err := t.agg.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("audit aggregator: %w", err))
	}
	if err := t.writer.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("audit writer: %w", err))
	}
	if t.out != nil {
		if err := t.out.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("outbox: %w", err))
		}
	}
	return errors.Join(errs...)
}
