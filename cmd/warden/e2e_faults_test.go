package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/audit/audittest"
)

// hookRecorder is a real webhook receiver keeping the bodies it gets.
type hookRecorder struct {
	mu     sync.Mutex
	bodies []string
}

func (h *hookRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var batch []struct {
		Topic string          `json:"topic"`
		Body  json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(b, &batch); err != nil {
		http.Error(rw, err.Error(), 400)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range batch {
		h.bodies = append(h.bodies, m.Topic+" "+string(m.Body))
	}
}

func (h *hookRecorder) has(parts ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bodies {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(b, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestE2EAdminEventsForwarded: a key made by the CLI (another process) and
// one made through the admin API each reach the webhook sink as admin
// records; the outbox metrics are exported; `audit status` agrees with
// serve about the sinks given serve's config through $WARDEN_CONFIG, and
// given no config at all (it reads the file serve last started with);
// given another config it says so and marks the sink as not in it instead
// of contradicting itself.
func TestE2EAdminEventsForwarded(t *testing.T) {
	hook := &hookRecorder{}
	recv := httptest.NewServer(hook)
	defer recv.Close()
	w := startWarden(t, "", "[[audit.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \""+recv.URL+"\"\n")
	defer w.stop()

	cliID, _ := createKey(t, w, "--name", "made-by-cli")
	var created struct{ ID string }
	if st := adminDo(t, w, w.key, "POST", "/admin/keys", `{"name":"made-by-api"}`, &created); st != http.StatusCreated {
		t.Fatalf("admin API create: %d", st)
	}
	for what, id := range map[string]string{"CLI": cliID, "admin API": created.ID} {
		waitFor(t, time.Minute, "the "+what+" key's admin record at the webhook", func() bool {
			return hook.has("audit ", `"kind":"admin"`, `"key_id":"`+id+`"`)
		})
	}

	req, _ := http.NewRequest(http.MethodGet, w.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"warden_outbox_bytes ", "warden_outbox_max_bytes 2.68435456e+08", "warden_outbox_dropped_total 0"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}

	status := func(env ...string) string {
		cmd := exec.Command(buildWarden(t), "audit", "status", "--data-dir", w.dataDir)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("audit status: %v\n%s", err, out)
		}
		return string(out)
	}
	conf := filepath.Join(w.dataDir, "test.toml")
	if out := status("WARDEN_CONFIG=" + conf); !strings.Contains(out, "1 forwarding sink(s) in "+conf) ||
		!strings.Contains(out, "\nhook ") || strings.Contains(out, "(*)") || strings.Contains(out, "No forwarding sinks") {
		t.Errorf("audit status with serve's config:\n%s", out)
	}
	if out := status(); !strings.Contains(out, "Outbox: ") || !strings.Contains(out, "of 268435456 bytes") {
		t.Errorf("audit status does not show the outbox's fill:\n%s", out)
	}
	// No --config, no $WARDEN_CONFIG: the file serve last started with.
	if out := status(); !strings.Contains(out, "1 forwarding sink(s) in "+conf+" (the configuration `warden serve` last started with)") ||
		!strings.Contains(out, "\nhook ") || strings.Contains(out, "(*)") || strings.Contains(out, "No forwarding sinks") {
		t.Errorf("audit status with no config:\n%s", out)
	}
	// Another configuration, without the sink: said so, and the sink the
	// database knows is marked as not in it.
	other := filepath.Join(t.TempDir(), "other.toml")
	if err := os.WriteFile(other, []byte("[audit]\nretention_days = 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := status("WARDEN_CONFIG=" + other); !strings.Contains(out, "No forwarding sinks in "+other) || !strings.Contains(out, "hook (*)") {
		t.Errorf("audit status with another config:\n%s", out)
	}
}

// TestE2EDamagedDatabaseRefused: bytes overwritten in old pages of the
// stopped server's database make the next `serve` refuse to start, naming
// the fix, and `audit verify --full` reports the damage.
func TestE2EDamagedDatabaseRefused(t *testing.T) {
	w := startWarden(t, "", "")
	if status, _, body := w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"x"}],"max_tokens":2}`); status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	w.stop()

	// Old data to damage: a few hundred KB of outbox rows, then the WAL
	// folded into the file.
	path := filepath.Join(w.dataDir, "warden.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := raw.Exec(`INSERT INTO outbox (topic, at, body) VALUES ('audit', ?, ?)`, i, fmt.Sprintf(`{"pad":%q}`, strings.Repeat("p", 800))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	mid := fi.Size() / 4096 * 2 / 3
	for page := mid; page < mid+2; page++ {
		if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), (page-1)*4096); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	serve := exec.Command(buildWarden(t), "serve", "--config", filepath.Join(w.dataDir, "test.toml"), "--data-dir", w.dataDir, "--listen", freeAddr(t))
	serve.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
	out, err := serve.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "damaged") || !strings.Contains(string(out), "warden backup") {
		t.Errorf("serve on a damaged database: %v\n%s\nwant a refusal naming `warden backup`", err, out)
	}
	t.Logf("serve: %s", out)
	verify := exec.Command(buildWarden(t), "audit", "verify", "--full", "--data-dir", w.dataDir)
	verify.Env = serve.Env
	out, err = verify.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "integrity_check") {
		t.Errorf("audit verify --full on a damaged database: %v\n%s", err, out)
	}
}

// TestAuditAckGapCLI: a sink that was sent a seq the chain no longer has
// (its cursor's seen_seq above the head) makes `audit ack-gap` record the
// gap above it; a second run finds nothing; the chain verifies.
func TestAuditAckGapCLI(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, dir, "keys", "create", "--name", "one"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	var head int64
	if err := db.QueryRow(`SELECT max(seq) FROM audit_records`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO outbox_cursors (sink, seen_seq) VALUES ('siem', ?)`, head+5); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, err := runCLI(t, dir, "audit", "ack-gap", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Head, Seen int64
		Seq        int64 `json:"gap_seq"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Head != head || got.Seen != head+5 || got.Seq != head+6 {
		t.Fatalf("ack-gap printed %s (%v); want head %d, seen %d, gap at %d", out, err, head, head+5, head+6)
	}
	if out, err := runCLI(t, dir, "audit", "ack-gap"); err != nil || !strings.HasPrefix(out, "no gap") {
		t.Errorf("second ack-gap: %q %v", out, err)
	}
	if out, err := runCLI(t, dir, "audit", "verify"); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("verify after ack-gap: %q %v", out, err)
	}
}

// TestE2EOutboxFullFailsClosed: with the only sink down and a small
// audit.outbox_max_bytes, requests are answered until the outbox is full,
// then refused with 503 audit_unavailable; /metrics shows the fill level
// and the sink gets the fill alert once it is back.
func TestE2EOutboxFullFailsClosed(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	hook := &hookRecorder{}
	recv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		hook.ServeHTTP(rw, r)
	}))
	defer recv.Close()
	w := startWarden(t, "", "[audit]\noutbox_max_bytes = 8192\n[[audit.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \""+recv.URL+"\"\ntopics = [\"audit\", \"checkpoint\", \"alert\"]\n")
	defer w.stop()

	var status int
	var body []byte
	for i := 0; i < 50 && status != http.StatusServiceUnavailable; i++ {
		status, _, body = w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"fill"}],"max_tokens":2}`)
		if status != 200 && status != http.StatusServiceUnavailable {
			t.Fatalf("status %d %s", status, body)
		}
	}
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "audit_unavailable") {
		t.Fatalf("with the outbox full: %d %s; want 503 audit_unavailable", status, body)
	}

	req, _ := http.NewRequest(http.MethodGet, w.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var fill float64
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, "warden_outbox_bytes "); ok {
			fmt.Sscan(v, &fill)
		}
	}
	if fill < 0.8*8192 || fill > 8192 {
		t.Errorf("warden_outbox_bytes = %v, want between 80%% of 8192 and 8192", fill)
	}

	down.Store(false)
	waitFor(t, time.Minute, "the outbox_full alert at the sink", func() bool {
		return hook.has("alert ", `"kind":"outbox_full"`, `"active":true`)
	})
	// Caught up, the server answers again.
	waitFor(t, time.Minute, "requests answered again", func() bool {
		st, _, _ := w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"again"}],"max_tokens":2}`)
		return st == 200
	})
}

// TestE2ETruncationAcknowledged: records a sink received are lost from the
// chain (deleted with their outbox rows and the outbox's id counter, as a
// truncated WAL loses them; the sink's cursor stays ahead): serve refuses
// to start naming `warden audit ack-gap`; after it, serve starts, and the
// next records reach the sink with seqs it has not seen.
func TestE2ETruncationAcknowledged(t *testing.T) {
	hook := &hookRecorder{}
	recv := httptest.NewServer(hook)
	defer recv.Close()
	sink := "[[audit.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"" + recv.URL + "\"\n"
	w := startWarden(t, "", sink)
	var lastID string
	for range 3 {
		status, hdr, body := w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"lost"}],"max_tokens":2}`)
		if status != 200 {
			t.Fatalf("status %d %s", status, body)
		}
		lastID = hdr.Get("X-Request-Id")
	}
	waitFor(t, time.Minute, "the last completion at the sink", func() bool { return hook.has(`"completion"`, lastID) })
	w.stop()

	path := filepath.Join(w.dataDir, "warden.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var head, seen int64
	if err := raw.QueryRow(`SELECT max(seq) FROM audit_records`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if err := raw.QueryRow(`SELECT seen_seq FROM outbox_cursors WHERE sink = 'hook'`).Scan(&seen); err != nil || seen < head-1 {
		t.Fatalf("the sink's seen seq %d (%v), want about the head %d", seen, err, head)
	}
	cut := seen - 3
	audittest.LoseTail(t, raw, cut, true)
	raw.Close()

	conf := filepath.Join(w.dataDir, "test.toml")
	serve := exec.Command(buildWarden(t), "serve", "--config", conf, "--data-dir", w.dataDir, "--listen", freeAddr(t))
	serve.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
	out, err := serve.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "warden audit ack-gap") || !strings.Contains(string(out), fmt.Sprint("seq ", seen)) {
		t.Fatalf("serve after losing records: %v\n%s\nwant a refusal naming seq %d and ack-gap", err, out, seen)
	}
	if out := w.warden(t, "audit", "ack-gap"); !strings.Contains(string(out), fmt.Sprintf("the gap record is seq %d", seen+1)) {
		t.Errorf("ack-gap: %s", out)
	}

	w2 := startWarden(t, w.dataDir, sink)
	defer w2.stop()
	_, hdr, _ := w2.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"after"}],"max_tokens":2}`)
	after := hdr.Get("X-Request-Id")
	waitFor(t, time.Minute, "the gap record and the new completion at the sink", func() bool {
		return hook.has(`"kind":"gap"`) && hook.has(`"completion"`, after)
	})
	hook.mu.Lock()
	defer hook.mu.Unlock()
	hashes := map[int64]map[string]bool{}
	for _, b := range hook.bodies {
		topic, body, _ := strings.Cut(b, " ")
		if topic != "audit" {
			continue
		}
		var r struct {
			Seq  int64  `json:"seq"`
			Hash string `json:"hash"`
		}
		json.Unmarshal([]byte(body), &r)
		if hashes[r.Seq] == nil {
			hashes[r.Seq] = map[string]bool{}
		}
		hashes[r.Seq][r.Hash] = true
	}
	for seq, hs := range hashes {
		if len(hs) > 1 {
			t.Errorf("the sink received %d different records with seq %d", len(hs), seq)
		}
	}
}
