package trail

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testlog"
	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/audit/audittest"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/outbox"
	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// receiver is a real webhook endpoint that keeps what it is sent, and
// answers 503 while down is set.
type receiver struct {
	srv  *httptest.Server
	down atomic.Bool

	mu   sync.Mutex
	msgs []received
}

type received struct {
	Topic string
	Body  json.RawMessage
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(req.Body)
		var batch []received
		if err := json.Unmarshal(b, &batch); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, batch...)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// has reports whether some message of topic has a body containing every
// one of parts.
func (r *receiver) has(topic string, parts ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.Topic != topic {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(string(m.Body), p)
		}
		if ok {
			return true
		}
	}
	return false
}

// seqHashes maps every audit seq received to the hashes it came with.
func (r *receiver) seqHashes() map[int64]map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int64]map[string]bool{}
	for _, m := range r.msgs {
		if m.Topic != outbox.TopicAudit {
			continue
		}
		var s struct {
			Seq  int64  `json:"seq"`
			Hash string `json:"hash"`
		}
		json.Unmarshal(m.Body, &s)
		if out[s.Seq] == nil {
			out[s.Seq] = map[string]bool{}
		}
		out[s.Seq][s.Hash] = true
	}
	return out
}

func startTrail(t *testing.T, db *store.DB, dir string, ac AuditConfig) *Trail {
	t.Helper()
	tr, err := New(db, Config{DataDir: dir, Audit: ac})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close(context.Background()) })
	return tr
}

func webhookAudit(r *receiver) AuditConfig {
	ac := DefaultAudit()
	ac.Sinks = []SinkConfig{{Name: "hook", Type: "webhook", URL: r.srv.URL}}
	return ac
}

// TestEveryChainWriterForwards: the chain's writers outside the request
// path each reach the webhook sink: key administration through
// keys.Manager and an admin record appended with audit.AppendTx (both as a
// command does it, on its own connection to the database, while the
// server's trail runs), the prune record and the prune anchor.
func TestEveryChainWriterForwards(t *testing.T) {
	recv := newReceiver(t)
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	tr := startTrail(t, db, dir, webhookAudit(recv))
	if _, err := tr.Writer().Append(t.Context(), completion("r1", "x")); err != nil {
		t.Fatal(err)
	}

	// Another "process": its own store.DB on the same file.
	cli := storetest.OpenDir(t, dir)
	m := &keys.Manager{DB: cli}
	k, _, err := m.Create(t.Context(), "os:alice", keys.Spec{Name: "forwarded"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Revoke(t.Context(), "os:alice", k.ID); err != nil {
		t.Fatal(err)
	}
	tx, err := cli.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.AppendTx(t.Context(), tx, audit.Record{Kind: audit.KindAdmin, Detail: json.RawMessage(`{"actor":"os:bob","action":"audit_text_read"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Prune(t.Context(), cli, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	for _, want := range []struct {
		what, topic string
		parts       []string
	}{
		{"the key create record", outbox.TopicAudit, []string{`"kind":"admin"`, k.ID, `create`}},
		{"the key revoke record", outbox.TopicAudit, []string{`"kind":"admin"`, k.ID, `revoke`}},
		{"the audit_text_read record", outbox.TopicAudit, []string{`"kind":"admin"`, `audit_text_read`}},
		{"the prune record", outbox.TopicAudit, []string{`"kind":"prune"`, `through_seq`}},
		{"the prune anchor", outbox.TopicCheckpoint, []string{`"kind":"prune"`, `"signature"`}},
	} {
		testwait.For(t, want.what+" at the webhook", func() bool { return recv.has(want.topic, want.parts...) })
	}
}

// damagedDB writes 2000 records to a database in dir, closes it and
// overwrites two whole pages in the middle of the file: old chain rows
// that opening the file does not read.
func damagedDB(t *testing.T, dir string) {
	t.Helper()
	db := storetest.OpenDir(t, dir)
	w := audit.NewWriter(db, audit.Config{DataDir: dir})
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, err := w.Append(t.Context(), completion(fmt.Sprint("req-", i), strings.Repeat("x", 200))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	path := db.Path()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 40*4096 {
		t.Fatalf("database is %d bytes: too small to damage an old page", fi.Size())
	}
	if wal, _ := os.ReadFile(path + "-wal"); len(wal) > 0 {
		t.Fatalf("a %d-byte WAL survived the close: the damage would be hidden", len(wal))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	mid := fi.Size() / 4096 / 2
	for page := mid; page < mid+2; page++ {
		if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), (page-1)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDatabaseRefused: bytes overwritten in an old page of a closed
// database file make the trail refuse to start, naming the fix.
func TestDamagedDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	damagedDB(t, dir)
	db2, err := store.Open(t.Context(), dir, store.Options{})
	if err != nil {
		// Damage the open itself sees is refused too; the trail's check
		// is what this test is about.
		t.Fatalf("open: %v", err)
	}
	defer db2.Close()
	tr, err := New(db2, Config{DataDir: dir, Audit: DefaultAudit()})
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Start(t.Context())
	if err == nil {
		tr.Close(t.Context())
		t.Fatal("the trail started on a damaged database")
	}
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "warden backup") {
		t.Errorf("start on a damaged database: %v; want store.ErrDamaged naming `warden backup`", err)
	}
	if err := db2.Check(t.Context(), true); !errors.Is(err, store.ErrDamaged) {
		t.Errorf("integrity_check: %v, want ErrDamaged", err)
	}
}

// rawDB opens the database file without Warden's store, as a crash or an
// operator would change it.
func rawDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// TestTruncationDetected: the newest committed rows lost after a sink
// received them (a truncated WAL: chain rows, their outbox rows and the
// outbox's id counter gone, the sink's cursor left ahead) stop the next
// start until AckGap records the gap; the chain then continues above every
// seq the sink holds, new messages get outbox ids the cursor has not
// passed, and the chain verifies.
func TestTruncationDetected(t *testing.T) {
	recv := newReceiver(t)
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	tr := startTrail(t, db, dir, webhookAudit(recv))
	var last int64
	for i := range 10 {
		seq, err := tr.Writer().Append(t.Context(), completion(fmt.Sprint("r", i), "x"))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	testwait.For(t, "every record at the sink", func() bool { return recv.has(outbox.TopicAudit, fmt.Sprintf(`"seq":%d,`, last)) })
	testwait.For(t, "the cursor to record the seq sent", func() bool {
		var seen int64
		db.QueryRow(`SELECT seen_seq FROM outbox_cursors WHERE sink = 'hook'`).Scan(&seen)
		return seen >= last
	})
	if err := tr.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Lose the newest four records as a truncated WAL would.
	cut := last - 3
	raw := rawDB(t, dir)
	audittest.LoseTail(t, raw, cut, true)
	raw.Close()

	tr2, err := New(db, Config{DataDir: dir, Audit: webhookAudit(recv)})
	if err != nil {
		t.Fatal(err)
	}
	err = tr2.Start(t.Context())
	if err == nil {
		tr2.Close(t.Context())
		t.Fatal("the trail started on a truncated chain")
	}
	if !errors.Is(err, ErrGap) || !strings.Contains(err.Error(), "warden audit ack-gap") || !strings.Contains(err.Error(), fmt.Sprint("seq ", last)) {
		t.Fatalf("start after truncation: %v; want ErrGap naming seq %d and ack-gap", err, last)
	}

	gap, gapSeq, err := AckGap(t.Context(), db, dir, "os:alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if gap.Head != cut-1 || gapSeq <= last {
		t.Errorf("gap %+v recorded at seq %d; want head %d and a seq above %d", gap, gapSeq, cut-1, last)
	}
	if _, _, err := AckGap(t.Context(), db, dir, "os:alice", time.Now()); !errors.Is(err, audit.ErrNoGap) {
		t.Errorf("second ack-gap: %v, want ErrNoGap", err)
	}

	tr3 := startTrail(t, db, dir, webhookAudit(recv))
	seq, err := tr3.Writer().Append(t.Context(), completion("after", "y"))
	if err != nil {
		t.Fatal(err)
	}
	if seq <= gapSeq {
		t.Errorf("new record at seq %d, want above the gap record's %d", seq, gapSeq)
	}
	testwait.For(t, "the gap record and the new record at the sink", func() bool {
		return recv.has(outbox.TopicAudit, `"kind":"gap"`) && recv.has(outbox.TopicAudit, `"after"`)
	})
	for s, hashes := range recv.seqHashes() {
		if len(hashes) > 1 {
			t.Errorf("the sink holds %d different records with seq %d", len(hashes), s)
		}
	}
	rep, err := audit.Verify(t.Context(), db, dir, nil)
	if err != nil || !rep.OK() {
		t.Errorf("verify after the acknowledged gap: %+v %v", rep, err)
	}
}

// outboxAlerts returns the bodies of the outbox fill alerts enqueued.
func outboxAlerts(t *testing.T, db *store.DB) []outbox.OutboxAlert {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT body FROM outbox WHERE topic = 'alert' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outbox.OutboxAlert
	for rows.Next() {
		var b string
		rows.Scan(&b)
		var a outbox.OutboxAlert
		if json.Unmarshal([]byte(b), &a) == nil && a.Kind == outbox.AlertKindOutbox {
			out = append(out, a)
		}
	}
	return out
}

// TestOutboxCap: with the sink down the outbox fills; past 80% of
// audit.outbox_max_bytes an alert is raised; at the cap fail_closed refuses
// the record (the request would get 503) and drop_oldest drops the oldest
// undelivered messages, records which in the chain, counts them, and the
// sink gets that record once it is back.
func TestOutboxCap(t *testing.T) {
	for _, mode := range []string{outbox.FullFailClosed, outbox.FullDropOldest} {
		t.Run(mode, func(t *testing.T) {
			recv := newReceiver(t)
			recv.down.Store(true)
			dir := t.TempDir()
			db := storetest.OpenDir(t, dir)
			ac := webhookAudit(recv)
			ac.OutboxMaxBytes, ac.OutboxFull = 16<<10, mode
			// The sink takes alerts too: alerts no sink takes are skipped
			// over, and then freed like delivered rows.
			ac.Sinks[0].Topics = []string{outbox.TopicAudit, outbox.TopicCheckpoint, outbox.TopicAlert}
			tr := startTrail(t, db, dir, ac)

			var refused error
			for i := range 200 {
				_, err := tr.Writer().Append(t.Context(), completion(fmt.Sprint("req-", i), "x"))
				if err != nil {
					refused = err
					break
				}
			}
			st, err := tr.OutboxState(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.Bytes > st.MaxBytes || st.MaxBytes != 16<<10 {
				t.Errorf("outbox state %+v: over its cap", st)
			}
			if as := outboxAlerts(t, db); len(as) == 0 || !as[0].Active || !st.Alerted {
				var n int
				db.QueryRow(`SELECT count(*) FROM outbox WHERE topic = 'alert'`).Scan(&n)
				var minid, maxid int
				db.QueryRow(`SELECT min(id), max(id) FROM outbox`).Scan(&minid, &maxid)
				t.Errorf("no fill alert raised: %+v (state %+v) alert rows %d ids %d..%d", as, st, n, minid, maxid)
			}
			switch mode {
			case outbox.FullFailClosed:
				if !errors.Is(refused, audit.ErrNotCommitted) || !errors.Is(refused, outbox.ErrFull) {
					t.Fatalf("append at the cap: %v; want ErrNotCommitted wrapping outbox.ErrFull", refused)
				}
				if st.Dropped != 0 {
					t.Errorf("fail_closed dropped %d messages", st.Dropped)
				}
				// The sink comes back and catches up: records are taken
				// again and the alert clears.
				recv.down.Store(false)
				testwait.For(t, "the sink to catch up", func() bool {
					sts, err := tr.out.Status(t.Context())
					return err == nil && len(sts) == 1 && sts[0].Pending == 0
				})
				if _, err := tr.Writer().Append(t.Context(), completion("after", "x")); err != nil {
					t.Fatalf("append after the sink caught up: %v", err)
				}
				as := outboxAlerts(t, db)
				if st, _ := tr.OutboxState(t.Context()); st.Alerted || len(as) == 0 || as[len(as)-1].Active {
					t.Errorf("the fill alert did not clear: state %+v, alerts %+v", st, as)
				}
			case outbox.FullDropOldest:
				if refused != nil {
					t.Fatalf("append with drop_oldest: %v", refused)
				}
				if st.Dropped == 0 {
					t.Fatalf("drop_oldest dropped nothing: %+v", st)
				}
				recs, err := audit.Query(t.Context(), db, audit.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				var noted bool
				for _, r := range recs {
					noted = noted || (r.Kind == audit.KindAdmin && strings.Contains(string(r.Detail), ActionOutboxDropped))
				}
				if !noted {
					t.Error("no chain record of the dropped messages")
				}
				rep, err := audit.Verify(t.Context(), db, dir, nil)
				if err != nil || !rep.OK() {
					t.Errorf("verify: %+v %v", rep, err)
				}
				recv.down.Store(false)
				testwait.For(t, "the dropped-messages record and the fill alert at the sink", func() bool {
					return recv.has(outbox.TopicAudit, ActionOutboxDropped) && recv.has(outbox.TopicAlert, `"kind":"outbox_full"`, `"active":true`)
				})
			}
		})
	}
}

// TestFindGapInDailyExport: a daily export holding seqs above the chain's
// head (rows lost after the export was written) is evidence of a gap.
func TestFindGapInDailyExport(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := audit.NewWriter(db, audit.Config{DataDir: dir})
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 5 {
		seq, err := w.Append(t.Context(), completion(fmt.Sprint("r", i), "x"))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := audit.ExportDays(t.Context(), db, filepath.Join(dir, "audit"), time.Now(), 30); err != nil {
		t.Fatal(err)
	}
	if g, err := FindGap(t.Context(), db, dir); err != nil || g.Found() {
		t.Fatalf("gap before any loss: %+v %v", g, err)
	}
	raw := rawDB(t, dir)
	audittest.LoseTail(t, raw, last-1, false)
	g, err := FindGap(t.Context(), db, dir)
	if err != nil || !g.Found() || g.Seen != last || g.Head != last-2 || !strings.Contains(g.String(), "daily export") {
		t.Errorf("gap after losing the newest rows: %+v %v; want seen %d, head %d, the export as evidence", g, err, last, last-2)
	}
}

// TestScheduledIntegrityCheck: the retention loop's daily integrity_check
// logs a damaged file with the fix, once per IntegrityEvery.
func TestScheduledIntegrityCheck(t *testing.T) {
	dir := t.TempDir()
	damagedDB(t, dir)
	db := storetest.OpenDir(t, dir)
	var logs testlog.Buffer
	tr, err := New(db, Config{DataDir: dir, Audit: DefaultAudit(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tr.retainOnce(t.Context(), now)
	if n := strings.Count(logs.String(), "database integrity check failed"); n != 1 || !strings.Contains(logs.String(), "warden backup") {
		t.Fatalf("first pass logged %d integrity failures:\n%s", n, logs.String())
	}
	tr.retainOnce(t.Context(), now.Add(time.Hour))
	if n := strings.Count(logs.String(), "database integrity check failed"); n != 1 {
		t.Errorf("an hour later: %d integrity failures logged, want the one (daily)", n)
	}
	tr.retainOnce(t.Context(), now.Add(IntegrityEvery))
	if n := strings.Count(logs.String(), "database integrity check failed"); n != 2 {
		t.Errorf("a day later: %d integrity failures logged, want 2", n)
	}
}
