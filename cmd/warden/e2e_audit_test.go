package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// auditRecords exports every record of w's trail through the CLI.
func auditRecords(t *testing.T, w *wardenProc) []map[string]any {
	t.Helper()
	out := w.warden(t, "audit", "export")
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestE2EAuditRecordsAndVerify(t *testing.T) {
	w := sharedWarden(t)
	body := `{"model":"warden-demo","messages":[{"role":"user","content":"audited"}],"max_tokens":5,"temperature":0}`
	status, hdr, resp := w.post(t, "/v1/chat/completions", "application/json", body)
	if status != 200 {
		t.Fatalf("status %d %s", status, resp)
	}
	id := hdr.Get("X-Request-Id")
	var req, done map[string]any
	for _, r := range auditRecords(t, w) {
		if r["request_id"] == id {
			switch r["kind"] {
			case "request":
				req = r
			case "completion":
				done = r
			}
		}
	}
	if req == nil || done == nil {
		t.Fatalf("request %s: request record %v, completion record %v", id, req, done)
	}
	if req["prompt_sha256"] != sha([]byte(body)) {
		t.Errorf("prompt hash %v, want SHA-256 of the body as received %s", req["prompt_sha256"], sha([]byte(body)))
	}
	if done["response_sha256"] != sha(resp) {
		t.Errorf("response hash %v, want SHA-256 of the body as delivered", done["response_sha256"])
	}
	if done["model"] != "warden-demo:latest" || done["model_digest"] == "" || done["key_id"] == "" || done["client_ip"] != "127.0.0.1" {
		t.Errorf("completion record %v", done)
	}
	if s, _ := done["seq"].(float64); s <= req["seq"].(float64) {
		t.Errorf("completion seq %v not after request seq %v", done["seq"], req["seq"])
	}

	// Key administration lands in the same chain.
	createKey(t, w, "--name", "audited-admin")
	var admin bool
	for _, r := range auditRecords(t, w) {
		admin = admin || (r["kind"] == "admin" && strings.Contains(string(mustMarshal(r["detail"])), "key.create"))
	}
	if !admin {
		t.Error("no admin record for keys create")
	}

	out := w.warden(t, "audit", "verify")
	if !strings.HasPrefix(string(out), "ok: ") {
		t.Errorf("audit verify: %s", out)
	}

	// tail prints the newest records, oldest first (records may be added
	// meanwhile, never removed).
	all := auditRecords(t, w)
	newest := all[len(all)-1]["seq"].(float64)
	lines := strings.Split(strings.TrimSpace(string(w.warden(t, "audit", "tail", "-n", "2", "--json"))), "\n")
	var seqs []float64
	for _, l := range lines {
		var r struct{ Seq float64 }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		seqs = append(seqs, r.Seq)
	}
	if len(seqs) != 2 || seqs[0] >= seqs[1] || seqs[1] < newest {
		t.Errorf("audit tail -n 2 gave seqs %v, want the two newest (the newest at least %v) in order", seqs, newest)
	}
}

func mustMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestE2EAuditSurvivesKill9 kills warden under load, streamed and not,
// while request records commit alongside the backend calls (issue 17):
// after the restart the chain verifies, every completion record follows
// its request record, and every request that got an answer has both.
func TestE2EAuditSurvivesKill9(t *testing.T) {
	w := startWarden(t, "", "")
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := range 4 {
		stream := i%2 == 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, w.base+"/v1/chat/completions",
					strings.NewReader(fmt.Sprintf(`{"model":"warden-demo","stream":%v,"messages":[{"role":"user","content":"load"}],"max_tokens":3}`, stream)))
				req.Header.Set("Authorization", "Bearer "+w.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // warden is gone
				}
				b := new(bytes.Buffer)
				_, rerr := b.ReadFrom(resp.Body)
				resp.Body.Close()
				end := `"finish_reason"`
				if stream {
					end = "data: [DONE]"
				}
				if rerr == nil && resp.StatusCode == 200 && strings.Contains(b.String(), end) {
					mu.Lock()
					answered = append(answered, resp.Header.Get("X-Request-Id"))
					mu.Unlock()
				}
			}
		}()
	}
	waitFor(t, time.Minute, "some answers under load", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answered) >= 20
	})
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	close(stop)
	wg.Wait()

	// The restart verifies the chain before serving.
	again := startWarden(t, w.dataDir, "")
	defer again.stop()
	requested := map[string]float64{} // request id → its request record's seq
	completed := map[string]bool{}
	for _, r := range auditRecords(t, again) {
		id, _ := r["request_id"].(string)
		seq, _ := r["seq"].(float64)
		switch r["kind"] {
		case "request":
			requested[id] = seq
		case "completion":
			completed[id] = true
			if rs, ok := requested[id]; !ok || rs >= seq {
				t.Errorf("completion record %v of request %s has no request record before it", seq, id)
			}
		}
	}
	for _, id := range answered {
		if _, ok := requested[id]; !ok || !completed[id] {
			t.Errorf("request %s was answered but has request record %v, completion record %v", id, ok, completed[id])
		}
	}
	if out := again.warden(t, "audit", "verify"); !strings.HasPrefix(string(out), "ok: ") {
		t.Errorf("audit verify after kill -9: %s", out)
	}
	t.Logf("%d answered requests, all with both records", len(answered))
}

// TestE2EAuditForwardedToWebhook: records and signed checkpoints reach a
// webhook sink from a running server, and the checkpoint received off-host
// verifies the local chain with --against.
func TestE2EAuditForwardedToWebhook(t *testing.T) {
	var (
		mu         sync.Mutex
		all        []string
		checkpoint []byte
	)
	recv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var batch []struct {
			Topic string          `json:"topic"`
			Body  json.RawMessage `json:"body"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(rw, err.Error(), 400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			all = append(all, string(m.Body))
			if m.Topic == "checkpoint" {
				checkpoint = m.Body
			}
		}
	}))
	defer recv.Close()

	w := startWarden(t, "", "[audit]\ncheckpoint_interval = \"1s\"\n[[audit.sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \""+recv.URL+"\"\n")
	defer w.stop()
	_, hdr, _ := w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"forward me"}],"max_tokens":2}`)
	id := hdr.Get("X-Request-Id")
	waitFor(t, time.Minute, "the completion record and a checkpoint at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		var done bool
		for _, b := range all {
			done = done || (strings.Contains(b, id) && strings.Contains(b, `"completion"`))
		}
		return done && checkpoint != nil
	})
	mu.Lock()
	cp := checkpoint
	mu.Unlock()
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(path, cp, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := w.warden(t, "audit", "verify", "--against", path); !strings.HasPrefix(string(out), "ok: ") {
		t.Errorf("verify --against the forwarded checkpoint: %s", out)
	}
	out := w.warden(t, "audit", "status", "--json")
	if !strings.Contains(string(out), `"hook"`) {
		t.Errorf("audit status: %s", out)
	}
}

// TestE2ETamperedChainRefusesStart: a record changed behind Warden's back
// (triggers dropped, raw SQL) stops the next start with a clear error, and
// `audit verify` names the row.
func TestE2ETamperedChainRefusesStart(t *testing.T) {
	w := startWarden(t, "", "")
	if status, _, body := w.post(t, "/v1/chat/completions", "application/json", `{"model":"warden-demo","messages":[{"role":"user","content":"x"}],"max_tokens":2}`); status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	w.stop()

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(w.dataDir, "warden.db"))
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	for _, q := range []string{
		`DROP TRIGGER audit_records_no_update`,
		`UPDATE audit_records SET tokens_out = tokens_out + 1000 WHERE seq = (SELECT max(seq) FROM audit_records WHERE kind = 'completion')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.QueryRow(`SELECT max(seq) FROM audit_records WHERE kind = 'completion'`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	db.Close()

	cmd := exec.Command(buildWarden(t), "audit", "verify", "--data-dir", w.dataDir)
	out, err := cmd.Output()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("seq %d", seq)) {
		t.Errorf("audit verify after tampering: %v\n%s\nwant a failure naming seq %d", err, out, seq)
	}
	conf := filepath.Join(w.dataDir, "test.toml")
	serve := exec.Command(buildWarden(t), "serve", "--config", conf, "--data-dir", w.dataDir, "--listen", freeAddr(t))
	serve.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
	out, err = serve.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not verify") {
		t.Errorf("serve on a tampered chain: %v\n%s\nwant a refusal", err, out)
	}
}
