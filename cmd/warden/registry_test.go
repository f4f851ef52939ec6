// The models end-to-end tests' registries (a real OCI registry in process, and one that answers garbage) and helpers.

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/runtime/ollama/ollamatest"
)

// testRegistry is a real OCI registry (go-containerregistry's, in
// process) on loopback, with an access log.
type testRegistry struct {
	host string // 127.0.0.1:port
	mu   sync.Mutex
	log  []string // "METHOD path"
	// hold, if set, is called for blob GETs with a Range header (the
	// backend's chunk downloads) before they are served.
	hold func(w http.ResponseWriter, r *http.Request) bool
}

// absoluteLocation makes the registry's relative upload Location headers
// absolute: Ollama's push client needs a host in them.
type absoluteLocation struct {
	http.ResponseWriter
	host string
}

func (a absoluteLocation) WriteHeader(code int) {
	if l := a.Header().Get("Location"); strings.HasPrefix(l, "/") {
		a.Header().Set("Location", "http://"+a.host+l)
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a absoluteLocation) Write(b []byte) (int, error) { return a.ResponseWriter.Write(b) }

func (a absoluteLocation) Flush() {
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{host: ln.Addr().String()}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.log = append(r.log, req.Method+" "+req.URL.Path)
		hold := r.hold
		r.mu.Unlock()
		// Ollama's download asks for a blob's direct URL and wants a
		// redirect to another host name: send it to localhost.
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") && strings.HasPrefix(req.Host, "127.0.0.1:") {
			http.Redirect(w, req, "http://localhost:"+strings.TrimPrefix(req.Host, "127.0.0.1:")+req.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		if hold != nil && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") && req.Header.Get("Range") != "" {
			if hold(w, req) {
				return
			}
		}
		h.ServeHTTP(absoluteLocation{w, r.host}, req)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// requests lists the logged requests whose path contains s.
func (r *testRegistry) requests(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// pusher is a second Ollama, with the demo model, that pushes models into
// the registry.
type pusher struct {
	c *api.Client
}

func newPusher(t *testing.T) *pusher {
	t.Helper()
	c := ollamatest.Serve(t)
	if err := models.ImportDemo(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	return &pusher{c: c}
}

// push makes name (registry-qualified) a copy of local and pushes it;
// it returns the manifest digest.
func (p *pusher) push(t *testing.T, local, name string) string {
	t.Helper()
	ctx := ctxT(t)
	if err := p.c.Copy(ctx, &api.CopyRequest{Source: local, Destination: name}); err != nil {
		t.Fatal(err)
	}
	if err := p.c.Push(ctx, &api.PushRequest{Model: name, Insecure: true}, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatalf("push %s: %v", name, err)
	}
	list, err := p.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Models {
		if c, _ := models.Canonical(m.Name); c == mustCanon(t, name) {
			return m.Digest
		}
	}
	t.Fatalf("pushed %s is not listed", name)
	return ""
}

// variant creates a model that differs from the demo in one parameter.
func (p *pusher) variant(t *testing.T, name string, numPredict int) {
	t.Helper()
	stream := false
	err := p.c.Create(ctxT(t), &api.CreateRequest{Model: name, From: models.DemoName, Stream: &stream,
		Parameters: map[string]any{"num_predict": numPredict}}, func(api.ProgressResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func mustCanon(t *testing.T, name string) string {
	t.Helper()
	c, ok := models.Canonical(name)
	if !ok {
		t.Fatalf("bad name %q", name)
	}
	return c
}

// jsonLines parses out line by line, failing on a line that is not a
// JSON object.
func jsonLines(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("progress line %q is not a JSON object: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) == 0 {
		t.Fatal("no progress lines")
	}
	return lines
}

func remarshal(in any, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// flipByte inverts the byte at off of the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// badRegistry answers the tag "garbage" with a manifest that is not JSON,
// and "mismatch" with a manifest whose one layer's bytes do not match its
// digest.
type badRegistry struct {
	host   string
	layer  string // the mismatched layer's digest, hex
	config string // the config's digest, hex (it matches)
}

func startBadRegistry(t *testing.T) *badRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &badRegistry{host: ln.Addr().String(), layer: strings.Repeat("ab", 32)}
	blob := bytes.Repeat([]byte("not what the digest says "), 40)
	config := []byte(`{"model_format":"gguf","model_family":"llama","file_type":"F32"}`)
	configDigest := sha(config)
	r.config = configDigest
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",`+
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:%s","size":%d}]}`, configDigest, len(config), r.layer, len(blob))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case strings.HasSuffix(req.URL.Path, "/manifests/garbage"):
			io.WriteString(w, "<html>this is no registry</html>")
		case strings.HasSuffix(req.URL.Path, "/manifests/mismatch"):
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
			io.WriteString(w, manifest)
		case strings.Contains(req.URL.Path, "/blobs/") && strings.HasPrefix(req.Host, "127.0.0.1:"):
			http.Redirect(w, req, "http://localhost:"+strings.TrimPrefix(req.Host, "127.0.0.1:")+req.URL.Path, http.StatusTemporaryRedirect)
		case strings.HasSuffix(req.URL.Path, "/blobs/sha256:"+configDigest):
			http.ServeContent(w, req, "config", time.Time{}, bytes.NewReader(config))
		case strings.Contains(req.URL.Path, "/blobs/"):
			http.ServeContent(w, req, "blob", time.Time{}, bytes.NewReader(blob))
		default:
			http.NotFound(w, req)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}
