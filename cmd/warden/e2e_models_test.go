package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/models"
)

// wardenErr runs an admin command that must fail and returns its stderr.
func (p *wardenProc) wardenErr(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(buildWarden(t), append(args, "--data-dir", p.dataDir)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + p.dataDir}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("warden %v succeeded, want an error", args)
	}
	return stderr.String()
}

// chatDigest sends one chat to model and returns the model digest its
// completion record carries.
func chatDigest(t *testing.T, w *wardenProc, model string) string {
	t.Helper()
	status, hdr, resp := w.post(t, "/v1/chat/completions", "application/json",
		`{"model":"`+model+`","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"temperature":0}`)
	if status != http.StatusOK {
		t.Fatalf("chat %s: %d %s", model, status, resp)
	}
	id := hdr.Get("X-Request-Id")
	for _, r := range auditRecords(t, w) {
		if r["kind"] == "completion" && r["request_id"] == id {
			d, _ := r["model_digest"].(string)
			return d
		}
	}
	t.Fatalf("no completion record for request %s", id)
	return ""
}

// TestE2EModelsPullUpdateRollback governs a model from a real OCI
// registry: a pull through Warden (JSON progress, line by line), an update
// pushed under the same name and pulled again (history shows both,
// serving and audit rows carry the new digest), a rollback (the first
// digest serves again), a refused pull outside the allowlist that never
// reaches the registry's blobs, a pin mismatch (503 and an alert), and
// verify finding a flipped byte.
func TestE2EModelsPullUpdateRollback(t *testing.T) {
	reg := startRegistry(t)
	push := newPusher(t)
	name := reg.host + "/library/m:latest"
	push.push(t, models.DemoName, name)

	recv := newAlertReceiver(t, "alert-signing-secret")
	dir, err := os.MkdirTemp(tmpRoot, "data-")
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "alert.secret")
	if err := os.WriteFile(secretFile, []byte("alert-signing-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWarden(t, dir, `isolation = "loopback"
[models]
allow = ["warden-demo", "127.0.0.1:*/library/m:*"]
[[alerts.sink]]
name = "alerts"
type = "webhook"
url = "`+recv.srv.URL+`"
secret_file = "`+secretFile+`"
`)
	defer w.stop()

	// The first pull: JSON progress, every line an object, the last the result.
	lines := jsonLines(t, w.warden(t, "models", "pull", "--insecure", "--json", name))
	last := lines[len(lines)-1]
	// The child stores the manifest as it re-encodes it: its digest is not
	// the pusher's, and is the one Warden records and serves.
	digestA, _ := last["new_digest"].(string)
	if last["status"] != "success" || len(digestA) != 64 || last["changed"] != true {
		t.Fatalf("first pull ended with %v, want success with a digest", last)
	}
	pulling := 0
	for _, l := range lines[:len(lines)-1] {
		if _, ok := l["status"].(string); !ok {
			t.Fatalf("progress line without status: %v", l)
		}
		if l["digest"] != nil && l["total"] != nil {
			pulling++
		}
	}
	if pulling == 0 {
		t.Fatalf("no layer progress among %d lines", len(lines))
	}
	if got := chatDigest(t, w, name); got != digestA {
		t.Fatalf("served digest %s, want %s", got, digestA)
	}

	// The update: another model under the same name.
	push.variant(t, "variant", 7)
	push.push(t, "variant", name)
	lines = jsonLines(t, w.warden(t, "models", "pull", "--insecure", "--json", name))
	last = lines[len(lines)-1]
	digestB, _ := last["new_digest"].(string)
	if last["changed"] != true || len(digestB) != 64 || digestB == digestA || last["old_digest"] != digestA || last["kept"] == "" {
		t.Fatalf("update ended with %v, want a change from %s with the old one kept", last, digestA)
	}
	var hist []models.Version
	if err := json.Unmarshal(w.warden(t, "models", "history", name, "--json"), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].New != digestB || hist[0].Old != digestA || hist[1].New != digestA || !hist[0].Kept || !hist[1].Kept {
		t.Fatalf("history = %+v, want the update then the first pull, both kept", hist)
	}
	// The server sees the change when its model list is next refreshed
	// (runtime: a few seconds).
	waitFor(t, time.Minute, "serving the new digest", func() bool { return chatDigest(t, w, name) == digestB })
	// The admin events of both pulls are in the audit chain with their digests.
	var pulls []string
	for _, r := range auditRecords(t, w) {
		if r["kind"] == "admin" && strings.Contains(fmt.Sprint(r["detail"]), models.ActionPull) {
			pulls = append(pulls, fmt.Sprint(r["model_digest"]))
		}
	}
	if strings.Join(pulls, ",") != digestA+","+digestB {
		t.Fatalf("audit pull events carry digests %v, want %s then %s", pulls, digestA, digestB)
	}

	// Kept versions are neither listed nor served.
	kept := fmt.Sprint(last["kept"])
	status, _, body := w.post(t, "/v1/chat/completions", "application/json", `{"model":"`+kept+`","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
	if status != http.StatusNotFound || !strings.Contains(string(body), "model_not_found") {
		t.Fatalf("kept version %s answered %d %s, want 404 model_not_found", kept, status, body)
	}

	// Rollback: the first digest serves again.
	out := string(w.warden(t, "models", "rollback", name))
	if !strings.Contains(out, shortDigest(digestA)) {
		t.Fatalf("rollback said %q", out)
	}
	waitFor(t, time.Minute, "serving the first digest again", func() bool { return chatDigest(t, w, name) == digestA })
	if msg := w.wardenErr(t, "models", "rollback", name, "--to", "0123456789abcdef"); !strings.Contains(msg, "no kept version") {
		t.Fatalf("rollback to an unknown digest said %q", msg)
	}

	// Outside the allowlist: refused before the registry sees anything of it.
	other := reg.host + "/library/other:latest"
	push.push(t, models.DemoName, other)
	if msg := w.wardenErr(t, "models", "pull", "--insecure", other); !strings.Contains(msg, "not allowed") {
		t.Fatalf("pull outside the allowlist said %q", msg)
	}
	for _, l := range reg.requests("/v2/library/other/") {
		if strings.HasPrefix(l, "GET ") {
			t.Fatalf("the refused pull reached the registry: %s", l)
		}
	}

	// A registry that is down, one that answers garbage, and one whose
	// layer does not match its digest: clear errors, nothing changed, no
	// blob left behind.
	listBefore := string(w.warden(t, "models", "list", "--json"))
	bad := startBadRegistry(t)
	for _, c := range []struct{ name, want string }{
		{"127.0.0.1:1/library/m:latest", "connection refused"},
		{bad.host + "/library/m:garbage", "pull"},
		{bad.host + "/library/m:mismatch", "digest mismatch"},
	} {
		if msg := w.wardenErr(t, "models", "pull", "--insecure", c.name); !strings.Contains(msg, c.want) {
			t.Errorf("pull %s said %q, want %q", c.name, msg, c.want)
		}
	}
	if got := string(w.warden(t, "models", "list", "--json")); got != listBefore {
		t.Fatalf("failed pulls changed the models:\n%s\nwas\n%s", got, listBefore)
	}
	if p, err := (models.Store{Dir: w.models}).Partials(); err != nil || len(p) > 0 {
		t.Fatalf("failed pulls left partial blobs %v (%v)", p, err)
	}
	for _, d := range []string{bad.layer, bad.config} {
		if _, err := os.Stat(filepath.Join(w.models, "blobs", "sha256-"+d)); !os.IsNotExist(err) {
			t.Fatalf("blob %s of the failed pull stayed in the blobs: %v", d, err)
		}
	}

	// A pin to the other digest: 503 model_digest_mismatch and an alert.
	// The server reads the CLI's pin within its refresh (a second).
	w.warden(t, "models", "pin", name, digestB)
	waitFor(t, time.Minute, "the CLI's pin to be served", func() bool {
		status, _, body = w.post(t, "/v1/chat/completions", "application/json", `{"model":"`+name+`","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
		return status != http.StatusOK
	})
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "model_digest_mismatch") {
		t.Fatalf("pinned mismatch answered %d %s, want 503 model_digest_mismatch", status, body)
	}
	waitFor(t, time.Minute, "the digest mismatch alert", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for _, a := range recv.alerts {
			if a["kind"] == "model_digest_mismatch" && a["pinned_digest"] == digestB && a["actual_digest"] == digestA {
				return true
			}
		}
		return false
	})
	w.warden(t, "models", "unpin", name)

	// verify finds a flipped byte in a blob.
	var res struct {
		OK     bool                 `json:"ok"`
		Models []models.ModelVerify `json:"models"`
	}
	vl := jsonLines(t, w.warden(t, "models", "verify", name, "--json"))
	if err := remarshal(vl[len(vl)-1], &res); err != nil || !res.OK {
		t.Fatalf("verify of an intact model: %v %+v", err, res)
	}
	m, _, err := models.Store{Dir: w.models}.ReadManifest(name)
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0]
	blob, _ := models.Store{Dir: w.models}.BlobPath(layer.Digest)
	flipByte(t, blob, layer.Size/2)
	msg := w.wardenErr(t, "models", "verify", name)
	if !strings.Contains(msg, "failed verification") {
		t.Fatalf("verify of a flipped byte said %q", msg)
	}
	cmd := exec.Command(buildWarden(t), "models", "verify", name, "--json", "--data-dir", w.dataDir)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
	raw, _ := cmd.Output()
	vl = jsonLines(t, raw)
	if err := remarshal(vl[len(vl)-1], &res); err != nil || res.OK {
		t.Fatalf("verify --json of a flipped byte: %v %+v", err, res)
	}
	found := false
	for _, b := range res.Models[0].Blobs {
		found = found || (b.Digest == layer.Digest && b.State == models.BlobCorrupted)
	}
	if !found {
		t.Fatalf("verify did not name the corrupted blob %s: %+v", layer.Digest, res.Models)
	}
}

// adminPull pulls name through POST /admin/models/pull and returns the
// NDJSON lines, each parsed.
func adminPull(t *testing.T, w *wardenProc, name string) []map[string]any {
	t.Helper()
	status, hdr, body := w.post(t, "/admin/models/pull", "application/json", `{"name":"`+name+`","insecure":true}`)
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("admin pull: %d %s %s", status, hdr.Get("Content-Type"), body)
	}
	return jsonLines(t, body)
}

// TestE2EModelsCancelledPull cancels pulls half-way, by Ctrl-C on the CLI
// and by a client going away from the admin API: no partial blobs stay
// behind and the previous version keeps serving. The admin API streams
// the same progress as NDJSON and refuses names outside the allowlist.
func TestE2EModelsCancelledPull(t *testing.T) {
	reg := startRegistry(t)
	push := newPusher(t)
	name := reg.host + "/library/m:latest"
	push.push(t, models.DemoName, name)
	w := startWarden(t, "", `isolation = "loopback"
[models]
allow = ["warden-demo", "`+reg.host+`/library/m:*"]
`)
	defer w.stop()

	lines := adminPull(t, w, name)
	last := lines[len(lines)-1]
	digestA, _ := last["new_digest"].(string)
	if last["status"] != "success" || len(digestA) != 64 {
		t.Fatalf("admin pull ended with %v", last)
	}
	status, _, body := w.post(t, "/admin/models/pull", "application/json", `{"name":"`+reg.host+`/library/other:latest","insecure":true}`)
	if status != http.StatusForbidden || !strings.Contains(string(body), "model_not_allowed") {
		t.Fatalf("admin pull outside the allowlist: %d %s, want 403 model_not_allowed", status, body)
	}
	status, _, body = w.post(t, "/admin/models/pull", "application/json", `{"name":"bad name!"}`)
	if status != http.StatusBadRequest {
		t.Fatalf("admin pull of a malformed name: %d %s, want 400", status, body)
	}

	// The update's new blob never arrives: its chunk download is held.
	push.variant(t, "variant", 9)
	push.push(t, "variant", name)
	held := make(chan struct{}, 16)
	reg.mu.Lock()
	reg.hold = func(_ http.ResponseWriter, r *http.Request) bool {
		held <- struct{}{}
		<-r.Context().Done()
		return true
	}
	reg.mu.Unlock()
	store := models.Store{Dir: w.models}
	partialsWhileHeld := func() {
		t.Helper()
		select {
		case <-held:
		case <-time.After(2 * time.Minute):
			t.Fatal("the pull never asked for the held blob")
		}
		if p, err := store.Partials(); err != nil || len(p) == 0 {
			t.Fatalf("no partial download while the blob is held (%v): the test proves nothing", err)
		}
	}
	var out bytes.Buffer // the CLI's output
	noPartials := func(how string) {
		t.Helper()
		p, err := store.Partials()
		if err != nil || len(p) > 0 {
			t.Fatalf("after %s: partial blobs %v (%v)\n%s", how, p, err, out.String())
		}
		var list []models.Listed
		if err := json.Unmarshal(w.warden(t, "models", "list", "--json"), &list); err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			if c, _ := models.Canonical(m.Name); c == mustCanon(t, name) && m.Digest != digestA {
				t.Fatalf("after %s: %s is at %s, want the previous %s", how, name, m.Digest, digestA)
			}
		}
	}

	// Ctrl-C on the CLI.
	cmd := exec.Command(buildWarden(t), "models", "pull", "--insecure", name, "--data-dir", w.dataDir)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + w.dataDir}
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partialsWhileHeld()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the interrupted pull succeeded:\n%s", out.String())
	}
	noPartials("Ctrl-C")

	// A client of the admin API that goes away; the server cleans up
	// once the backend's pull has ended.
	ctx, cancel := context.WithCancel(ctxT(t))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.base+"/admin/models/pull", strings.NewReader(`{"name":"`+name+`","insecure":true}`))
	req.Header.Set("Authorization", "Bearer "+w.key)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	partialsWhileHeld()
	cancel()
	<-errc
	waitFor(t, time.Minute, "the server removing the partial blobs", func() bool {
		p, err := store.Partials()
		return err == nil && len(p) == 0
	})
	noPartials("the admin client going away")
}

// TestE2EModelsImport imports the demo GGUF through the CLI with a
// Modelfile, a licence and a source (its provenance record carries them,
// and it serves), refuses a file that is not GGUF before anything
// changes, and prunes kept versions beyond models.keep_versions.
func TestE2EModelsImport(t *testing.T) {
	w := startWarden(t, "", "[models]\nkeep_versions = 1\n")
	defer w.stop()
	dir := t.TempDir()
	gguf, err := models.DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "tiny.gguf")
	lic := filepath.Join(dir, "LICENSE")
	notGGUF := filepath.Join(dir, "notes.gguf")
	for p, b := range map[string][]byte{file: gguf, lic: []byte("MIT License\n\nCopyright (c) 2026 Warden\n"), notGGUF: []byte("just some notes, not a model at all\n")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	modelfile := func(n int) string {
		p := filepath.Join(dir, fmt.Sprintf("Modelfile.%d", n))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("FROM ./ignored.gguf\nTEMPLATE \"{{ .Prompt }}\"\nPARAMETER num_predict %d\nPARAMETER num_thread 1\n", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listed := func() map[string]models.Listed {
		var list []models.Listed
		if err := json.Unmarshal(w.warden(t, "models", "list", "--json"), &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]models.Listed{}
		for _, m := range list {
			out[mustCanon(t, m.Name)] = m
		}
		return out
	}
	before := listed()

	msg := w.wardenErr(t, "models", "import", notGGUF, "--name", "notes")
	if !strings.Contains(msg, "not a GGUF file") {
		t.Fatalf("import of a text file said %q", msg)
	}
	if got := listed(); len(got) != len(before) {
		t.Fatalf("a refused import changed the models: %v -> %v", before, got)
	}

	lines := jsonLines(t, w.warden(t, "models", "import", file, "--name", "tiny", "--modelfile", modelfile(5),
		"--license", lic, "--source", "https://example.org/tiny.gguf", "--json"))
	last := lines[len(lines)-1]
	if last["status"] != "success" || last["changed"] != true {
		t.Fatalf("import ended with %v", last)
	}
	uploaded := false
	for _, l := range lines {
		uploaded = uploaded || (strings.HasPrefix(fmt.Sprint(l["status"]), "uploading") && l["completed"] == l["total"])
	}
	if !uploaded {
		t.Fatalf("no complete upload progress in %v", lines)
	}
	var show models.Shown
	if err := json.Unmarshal(w.warden(t, "models", "show", "tiny", "--json"), &show); err != nil {
		t.Fatal(err)
	}
	p := show.Provenance
	if p == nil || p.Source != "https://example.org/tiny.gguf" || p.SourceSHA256 != sha(gguf) || p.LicenseSPDX != "MIT" || !strings.HasPrefix(show.License, "MIT License") {
		t.Fatalf("show = %+v, provenance %+v", show, p)
	}
	if show.Family != "llama" || show.TemplateSHA256 != sha([]byte("{{ .Prompt }}")) || !show.Allowed {
		t.Fatalf("show = %+v", show)
	}
	status, _, body := w.post(t, "/v1/chat/completions", "application/json", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`)
	if status != http.StatusOK {
		t.Fatalf("the imported model answered %d %s", status, body)
	}

	// load warms it, unload frees it.
	w.warden(t, "models", "load", "tiny")
	if !listed()[mustCanon(t, "tiny")].Loaded {
		t.Fatal("tiny is not loaded after models load")
	}
	w.warden(t, "models", "unload", "tiny")
	waitFor(t, time.Minute, "tiny unloaded", func() bool { return !listed()[mustCanon(t, "tiny")].Loaded })

	// Two more versions with keep_versions = 1: the oldest kept one goes.
	w.warden(t, "models", "import", file, "--name", "tiny", "--modelfile", modelfile(6))
	out := string(w.warden(t, "models", "import", file, "--name", "tiny", "--modelfile", modelfile(7)))
	if !strings.Contains(out, `"pruned":["tiny:warden-v-`) {
		t.Fatalf("the third import pruned nothing: %q", out)
	}
	if m := listed()[mustCanon(t, "tiny")]; m.Versions != 1 {
		t.Fatalf("tiny keeps %d versions, want 1", m.Versions)
	}
	w.warden(t, "models", "annotate", "tiny", "--note", "reviewed by the data team")
	var doc struct {
		Models []models.Record `json:"models"`
	}
	if err := json.Unmarshal(w.warden(t, "models", "manifest", "--json"), &doc); err != nil {
		t.Fatal(err)
	}
	var tiny []models.Record
	for _, r := range doc.Models {
		if r.Name == mustCanon(t, "tiny") {
			tiny = append(tiny, r)
		}
	}
	if len(tiny) != 3 || !tiny[2].Current || len(tiny[2].Notes) != 1 || tiny[2].Notes[0].Note != "reviewed by the data team" {
		t.Fatalf("manifest records of tiny: %+v", tiny)
	}
}
