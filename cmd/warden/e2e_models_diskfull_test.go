package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testenv"
	"github.com/warden-llm/warden/models"
)

// diskFullBlob is the size of the update's new layer; diskFullFS is the
// size of the filesystem the models live on: the layer cannot fit.
const (
	diskFullFS   = 24 << 20
	diskFullBlob = 64 << 20
)

// TestE2EModelsPullDiskFull fills the disk during a pull: the backend's
// models directory is a tmpfs of 24 MiB (mounted by the test: it needs
// root) and an update of the served model adds a 64 MiB layer, so the
// backend's write of that blob fails with ENOSPC half-way. The pull fails
// with an error that names the problem, the previous digest keeps serving,
// and no partial or unreferenced blob is left in the models directory.
func TestE2EModelsPullDiskFull(t *testing.T) {
	testenv.NeedRoot(t, "mounts a small tmpfs as the models directory")
	reg := startRegistry(t)
	push := newPusher(t)
	name := reg.host + "/library/m:latest"
	push.push(t, models.DemoName, name)

	dataDir, err := os.MkdirTemp(tmpRoot, "data-")
	if err != nil {
		t.Fatal(err)
	}
	modelsDir := filepath.Join(dataDir, "models")
	if err := os.Mkdir(modelsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", modelsDir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", diskFullFS)); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", modelsDir, err)
	}
	t.Cleanup(func() { // after the server's own cleanup (cleanups run last first)
		if err := syscall.Unmount(modelsDir, 0); err != nil {
			t.Errorf("unmount %s: %v", modelsDir, err)
		}
	})
	w := startWarden(t, dataDir, `isolation = "loopback"
[models]
allow = ["warden-demo", "`+reg.host+`/library/m:*"]
`)
	defer w.stop()
	lines := adminPull(t, w, name)
	digestA, _ := lines[len(lines)-1]["new_digest"].(string)
	if lines[len(lines)-1]["status"] != "success" || len(digestA) != 64 {
		t.Fatalf("first pull ended with %v", lines[len(lines)-1])
	}

	// The update: the same manifest and one more layer, too big for the
	// disk.
	big := make([]byte, diskFullBlob)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	bigDigest := "sha256:" + hex.EncodeToString(sum[:])
	regPushBlob(t, reg, "library/m", bigDigest, big)
	mf := regGet(t, reg, "/v2/library/m/manifests/latest")
	var m map[string]any
	if err := json.Unmarshal(mf, &m); err != nil {
		t.Fatal(err)
	}
	m["layers"] = append(m["layers"].([]any), map[string]any{
		"mediaType": "application/vnd.ollama.image.license", "digest": bigDigest, "size": len(big)})
	mf, _ = json.Marshal(m)
	regPut(t, reg, "/v2/library/m/manifests/latest", m["mediaType"].(string), mf)

	stderr := w.wardenErr(t, "models", "pull", "--insecure", name)
	t.Logf("the failed pull says: %s", strings.TrimSpace(stderr))
	if !strings.Contains(stderr, "no space left on device") {
		t.Errorf("the failed pull does not name the problem:\n%s", stderr)
	}
	if got := reg.requests(bigDigest); len(got) == 0 {
		t.Fatal("the backend never asked for the big layer: the test proves nothing")
	}

	// The previous version keeps serving.
	var list []models.Listed
	if err := json.Unmarshal(w.warden(t, "models", "list", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if c, _ := models.Canonical(l.Name); c == mustCanon(t, name) {
			found = true
			if l.Digest != digestA {
				t.Errorf("%s is at %s after the failed pull, want the previous %s", name, l.Digest, digestA)
			}
		}
	}
	if !found {
		t.Errorf("%s is gone after the failed pull", name)
	}
	if d := chatDigest(t, w, name); d != digestA {
		t.Errorf("served digest %s, want the previous %s", d, digestA)
	}

	// No partial or unreferenced blob is left.
	store := models.Store{Dir: modelsDir}
	waitFor(t, 2*time.Minute, "the partial blobs removed", func() bool {
		p, err := store.Partials()
		return err == nil && len(p) == 0
	})
	refs, err := store.Referenced()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(modelsDir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		d := "sha256:" + strings.TrimPrefix(e.Name(), "sha256-")
		if !refs[d] {
			t.Errorf("blob %s is referenced by no manifest", e.Name())
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(modelsDir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < diskFullFS/2 {
		t.Errorf("only %d bytes free on the models filesystem after the failed pull: the partial blob's space was not given back", free)
	}
}

// regPushBlob uploads blob to repo in the registry in one request.
func regPushBlob(t *testing.T, reg *testRegistry, repo, digest string, blob []byte) {
	t.Helper()
	resp, err := http.Post("http://"+reg.host+"/v2/"+repo+"/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %d, location %q", resp.StatusCode, loc)
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	regPut(t, reg, loc+sep+"digest="+digest, "application/octet-stream", blob)
}

// regPut PUTs body at path (or an absolute URL) in the registry.
func regPut(t *testing.T, reg *testRegistry, path, contentType string, body []byte) {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = "http://" + reg.host + path
	}
	req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, b)
	}
}

// regGet reads path from the registry (a manifest, in its own type).
func regGet(t *testing.T, reg *testRegistry, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.host+path, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}
