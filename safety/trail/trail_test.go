package trail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func completion(id, text string) audit.Record {
	return audit.Record{Kind: audit.KindCompletion, RequestID: id, KeyID: "k1", Endpoint: "/v1/chat/completions",
		Model: "demo:latest", Status: 200, Prompt: "prompt " + text, Response: "answer " + text}
}

// TestRetainOnce: one retention pass exports the days, prunes records and
// day and month usage past retention_days, purges text past
// text_retention_days and drops forwarded rows older than a day, and the
// chain still verifies.
func TestRetainOnce(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	clk := storetest.NewClock(time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC))

	w := audit.NewWriter(db, audit.Config{DataDir: dir, StoreText: audit.StoreTextFull, Now: clk.Now})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	seqs := map[string]int64{}
	appendAt := func(id string, after time.Duration) {
		clk.Advance(after)
		seq, err := w.Append(ctx, completion(id, id))
		if err != nil {
			t.Fatal(err)
		}
		seqs[id] = seq
	}
	appendAt("old", 0)                  // day 0: past the 30 days of retention
	appendAt("mid", 10*24*time.Hour)    // day 10: kept, its text past the 7 days
	appendAt("recent", 24*24*time.Hour) // day 34: kept with its text
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(24 * time.Hour) // now: day 35
	now := clk.Now()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.EnqueueTx(ctx, tx,
		outbox.Message{Topic: outbox.TopicAudit, Body: []byte(`{"n":1}`), Time: now.Add(-48 * time.Hour)},
		outbox.Message{Topic: outbox.TopicAudit, Body: []byte(`{"n":2}`), Time: now.Add(-time.Hour)},
	); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Usage of day 0 (past retention), of its month (kept: it had not
	// ended 30 days ago) and of today and this month (kept), for a key and
	// for an end user under it.
	for _, table := range []string{"usage (key_id, period, bucket, tokens) VALUES ('k', ?, ?, 1)",
		"user_usage (key_id, user_id, period, bucket, tokens) VALUES ('k', 'alice', ?, ?, 1)"} {
		for _, row := range [][2]string{{"day", "2026-10-01"}, {"month", "2026-10"}, {"day", "2026-11-05"}, {"month", "2026-11"}} {
			if _, err := db.ExecContext(ctx, "INSERT INTO "+table, row[0], row[1]); err != nil {
				t.Fatal(err)
			}
		}
	}

	var logs testlog.Buffer
	tr, err := New(db, Config{DataDir: dir, Audit: DefaultAudit(), Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tr.retainOnce(ctx, now)

	recs, err := audit.Query(ctx, db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		if r.Kind == audit.KindCompletion {
			ids = append(ids, r.RequestID)
		}
	}
	if !slices.Equal(ids, []string{"mid", "recent"}) {
		t.Errorf("completions after retention = %v, want [mid recent]", ids)
	}
	for id, want := range map[string]string{"old": "", "mid": "", "recent": "prompt recent"} {
		p, _, err := audit.ReadText(ctx, db, dir, seqs[id])
		switch {
		case want == "" && !errors.Is(err, audit.ErrNoText):
			t.Errorf("text of %s: %q, %v; want ErrNoText", id, p, err)
		case want != "" && (err != nil || p != want):
			t.Errorf("text of %s: %q, %v; want %q", id, p, err, want)
		}
	}
	day := func(d int) string {
		return filepath.Join(dir, "audit", clk.Now().AddDate(0, 0, d-35).Format(time.DateOnly)+".jsonl.gz")
	}
	for d, want := range map[int]bool{0: false, 10: true, 34: true} {
		if _, err := os.Stat(day(d)); (err == nil) != want {
			t.Errorf("export of day %d: exists %v, want %v", d, err == nil, want)
		}
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("outbox rows after retention = %d, want 1 (the one younger than a day)", rows)
	}
	for _, table := range []string{"usage", "user_usage"} {
		var left string
		if err := db.QueryRow(`SELECT group_concat(bucket, ' ') FROM (SELECT bucket FROM ` + table + ` ORDER BY bucket)`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != "2026-10 2026-11 2026-11-05" {
			t.Errorf("%s buckets after retention: %q, want all but day 0's", table, left)
		}
	}
	if rep, err := audit.Verify(ctx, db, dir, nil); err != nil || !rep.OK() {
		t.Errorf("verify after retention: %+v, %v", rep, err)
	}
	for _, want := range []string{"audit retention: pruned records", "audit text retention: purged text", "usage retention: pruned day and month usage"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("retention logged errors:\n%s", logs.String())
	}
}

type nopSink string

func (s nopSink) Name() string                                  { return string(s) }
func (s nopSink) Send(context.Context, []outbox.Delivery) error { return nil }

// TestForgetSinks: the delivery position of a sink taken out of the config
// is forgotten; those of configured audit and alert sinks stay.
func TestForgetSinks(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	ob := outbox.New(db, []outbox.Sink{nopSink("trail"), nopSink("ops"), nopSink("gone")}, outbox.Options{})
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ob.Close(ctx); err != nil {
		t.Fatal(err)
	}

	var logs testlog.Buffer
	cfg := Config{DataDir: dir, Audit: DefaultAudit(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	cfg.Audit.Sinks = []SinkConfig{{Name: "trail", Type: "webhook", URL: "http://127.0.0.1:9/"}}
	cfg.Alerts.Sinks = []SinkConfig{{Name: "ops", Type: "webhook", URL: "http://127.0.0.1:9/"}}
	tr, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.forgetSinks(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := outbox.ReadStatus(ctx, db, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range st {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"ops", "trail"}) {
		t.Errorf("sinks after forgetSinks = %v, want [ops trail]", names)
	}
	if !strings.Contains(logs.String(), "sink=gone") {
		t.Errorf("log does not name the forgotten sink:\n%s", logs.String())
	}
}

// TestStartRecordsConfigAndClose: Start appends the start record with the
// version and the digest of the configuration handed in; Close stops the
// writer and may be called again.
func TestStartRecordsConfigAndClose(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	conf := map[string]string{"listen": "127.0.0.1:8080"}
	tr, err := New(db, Config{DataDir: dir, Audit: DefaultAudit(), StartConfig: conf, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Refused("192.0.2.1") // the aggregator runs
	if err := tr.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := tr.Writer().Append(ctx, completion("late", "x")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}

	recs, err := audit.Query(ctx, db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []audit.Kind
	var detail map[string]string
	for _, r := range recs {
		kinds = append(kinds, r.Kind)
		if r.Kind == audit.KindConfig {
			if err := json.Unmarshal(r.Detail, &detail); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum := sha256.Sum256([]byte(`{"listen":"127.0.0.1:8080"}`))
	want := map[string]string{"event": "start", "version": "v1.2.3", "config_sha256": hex.EncodeToString(sum[:])}
	if len(detail) != len(want) || detail["event"] != want["event"] || detail["version"] != want["version"] || detail["config_sha256"] != want["config_sha256"] {
		t.Errorf("start record detail = %v, want %v", detail, want)
	}
	// The aggregator flushed its count on Close, before the writer stopped.
	if !slices.Equal(kinds, []audit.Kind{audit.KindConfig, audit.KindAuthRefused}) {
		t.Errorf("records = %v, want [config auth_refused]", kinds)
	}
}
