package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// fakeBackend is an in-memory Ollama for the Governor: names point to
// manifest digests; a pull points a name at what pulls[name] says.
type fakeBackend struct {
	mu       sync.Mutex
	models   map[string]string // canonical name → digest
	modified map[string]time.Time
	pulls    map[string]string
	pullErr  error
	loaded   map[string]bool
	calls    []string
	tick     int
}

func newFake() *fakeBackend {
	return &fakeBackend{models: map[string]string{}, modified: map[string]time.Time{}, pulls: map[string]string{}, loaded: map[string]bool{}}
}

func (f *fakeBackend) set(name, digest string) {
	c, _ := Canonical(name)
	f.tick++
	f.models[c], f.modified[c] = digest, time.Unix(int64(f.tick), 0)
}

func (f *fakeBackend) call(s string) {
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) List(context.Context) (*api.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("list")
	var out api.ListResponse
	for n, d := range f.models {
		out.Models = append(out.Models, api.ListModelResponse{Name: n, Model: n, Digest: d, ModifiedAt: f.modified[n]})
	}
	return &out, nil
}

func (f *fakeBackend) Show(_ context.Context, req *api.ShowRequest) (*api.ShowResponse, error) {
	return &api.ShowResponse{License: "MIT License", Template: "{{ .Prompt }}", Details: api.ModelDetails{Family: "llama"}}, nil
}

func (f *fakeBackend) ListRunning(context.Context) (*api.ProcessResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out api.ProcessResponse
	for n := range f.loaded {
		out.Models = append(out.Models, api.ProcessModelResponse{Name: n, Model: n})
	}
	return &out, nil
}

func (f *fakeBackend) Pull(_ context.Context, req *api.PullRequest, fn api.PullProgressFunc) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("pull " + req.Model)
	if f.pullErr != nil {
		return f.pullErr
	}
	d, ok := f.pulls[mustCanonical(req.Model)]
	if !ok {
		return errors.New("pull model manifest: file does not exist")
	}
	if err := fn(api.ProgressResponse{Status: "pulling manifest"}); err != nil {
		return err
	}
	f.set(req.Model, d)
	return nil
}

func (f *fakeBackend) Copy(_ context.Context, req *api.CopyRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("copy " + req.Source + " " + req.Destination)
	d, ok := f.models[mustCanonical(req.Source)]
	if !ok {
		return fmt.Errorf("model %q not found", req.Source)
	}
	f.set(req.Destination, d)
	return nil
}

func (f *fakeBackend) Delete(_ context.Context, req *api.DeleteRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("delete " + req.Model)
	c := mustCanonical(req.Model)
	if _, ok := f.models[c]; !ok {
		return fmt.Errorf("model %q not found", req.Model)
	}
	delete(f.models, c)
	return nil
}

func (f *fakeBackend) Create(context.Context, *api.CreateRequest, api.CreateProgressFunc) error {
	return errors.New("not in this fake")
}

func (f *fakeBackend) CreateBlob(context.Context, string, io.Reader) error {
	return errors.New("not in this fake")
}

func (f *fakeBackend) Generate(_ context.Context, req *api.GenerateRequest, _ api.GenerateResponseFunc) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := mustCanonical(req.Model)
	if req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
		f.call("unload " + c)
		delete(f.loaded, c)
		return nil
	}
	f.call("load " + c)
	f.loaded[c] = true
	return nil
}

func mustCanonical(n string) string {
	c, _ := Canonical(n)
	return c
}

func digest(c byte) string { return strings.Repeat(string(c), 64) }

func newGov(t *testing.T, allow ...string) (*Governor, *fakeBackend) {
	t.Helper()
	a, err := ParseAllowlist(allow)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	return &Governor{Backend: f, DB: storetest.Open(t), Allow: a}, f
}

func TestGovernorPullKeepsAndRecords(t *testing.T) {
	g, f := newGov(t, "m:*")
	changes := 0
	g.OnChange = func() { changes++ }
	ctx := t.Context()
	name := "registry.ollama.ai/library/m:latest"

	f.pulls[name] = digest('a')
	ch, err := g.Pull(ctx, "os:t", "m", false, nil)
	if err != nil || !ch.Changed || ch.Old != "" || ch.New != digest('a') || ch.Kept != "" {
		t.Fatalf("first pull: %+v %v", ch, err)
	}
	f.pulls[name] = digest('b')
	ch, err = g.Pull(ctx, "os:t", "m", false, nil)
	keptA, _ := KeptName(name, digest('a'))
	if err != nil || ch.Old != digest('a') || ch.New != digest('b') || ch.Kept != keptA || f.models[keptA] != digest('a') {
		t.Fatalf("update: %+v %v, models %v", ch, err, f.models)
	}
	// The same again: nothing changes, no new kept copy.
	before := len(f.models)
	if ch, err = g.Pull(ctx, "os:t", "m", false, nil); err != nil || ch.Changed || len(f.models) != before {
		t.Fatalf("a pull with no change: %+v %v, %d models (was %d)", ch, err, len(f.models), before)
	}
	if changes != 2 {
		t.Errorf("OnChange called %d times for 2 changes", changes)
	}
	h, err := g.History(ctx, "m")
	if err != nil || len(h) != 2 || h[0].New != digest('b') || h[1].New != digest('a') || !h[0].Kept || !h[1].Kept {
		t.Fatalf("history = %+v %v", h, err)
	}
	var events, chained int
	g.DB.QueryRowContext(ctx, `SELECT count(*) FROM admin_events WHERE action = 'model.pull'`).Scan(&events)
	g.DB.QueryRowContext(ctx, `SELECT count(*) FROM audit_records WHERE kind = 'admin' AND model_digest IN (?, ?)`, digest('a'), digest('b')).Scan(&chained)
	if events != 2 || chained != 2 {
		t.Errorf("%d admin events, %d chained records with the digests; want 2 and 2", events, chained)
	}

	// A failed pull leaves the name where it was and drops its kept copy.
	f.pullErr = errors.New("registry down")
	delete(f.models, keptA)
	before = len(f.models)
	if _, err := g.Pull(ctx, "os:t", "m", false, nil); err == nil || !strings.Contains(err.Error(), "registry down") {
		t.Fatalf("failed pull: %v", err)
	}
	if f.models[name] != digest('b') || len(f.models) != before {
		t.Fatalf("a failed pull changed the models: %v", f.models)
	}
}

func TestGovernorRefusesBeforeAsking(t *testing.T) {
	g, f := newGov(t, "m:*")
	for _, c := range []struct {
		name string
		want error
	}{
		{"other", ErrNotAllowed},
		{"evil.example/library/m:latest", ErrNotAllowed},
		{"bad name!", ErrBadName},
		{"", ErrBadName},
		{"m:warden-v-aaaaaaaaaaaa.latest", ErrKept},
	} {
		if _, err := g.Pull(t.Context(), "os:t", c.name, false, nil); !errors.Is(err, c.want) {
			t.Errorf("pull %q: %v, want %v", c.name, err, c.want)
		}
	}
	if len(f.calls) != 0 {
		t.Errorf("refused pulls reached the backend: %v", f.calls)
	}
	f.set("other", digest('a'))
	f.set("m", digest('b'))
	list, err := g.List(t.Context())
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %+v %v", list, err)
	}
	for _, m := range list {
		if want := strings.Contains(m.Name, "/m:"); m.Allowed != want {
			t.Errorf("%s listed allowed=%v, want %v", m.Name, m.Allowed, want)
		}
	}
	if _, err := g.Pull(t.Context(), "", "m", false, nil); err == nil {
		t.Error("a pull without an actor was accepted")
	}
}

func TestGovernorRollbackAndPins(t *testing.T) {
	g, f := newGov(t)
	ctx := t.Context()
	name := "registry.ollama.ai/library/m:latest"
	f.set(name, digest('a'))
	if _, err := g.Rollback(ctx, "os:t", "m", ""); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("rollback with no previous version: %v", err)
	}
	if _, err := g.Pin(ctx, "os:t", "m", digest('9')); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("pin to a digest it never had: %v", err)
	}
	if _, err := g.Pin(ctx, "os:t", "nope", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin of an unknown model: %v", err)
	}
	if err := g.Unpin(ctx, "os:t", "m"); err == nil || !strings.Contains(err.Error(), "not pinned") {
		t.Fatalf("unpin of an unpinned model: %v", err)
	}
	f.pulls[name] = digest('b')
	if _, err := g.Pull(ctx, "os:t", "m", false, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := g.Pin(ctx, "os:t", "m", ""); err != nil || d != digest('b') {
		t.Fatalf("pin to the current digest: %q %v", d, err)
	}
	f.loaded[name] = true
	if _, err := g.Rollback(ctx, "os:t", "m", digest('c')[:12]); !errors.Is(err, ErrNoVersion) {
		t.Fatalf("rollback to an unknown digest: %v", err)
	}
	ch, err := g.Rollback(ctx, "os:t", "m", "")
	if err != nil || ch.New != digest('a') || !ch.PinMoved || f.models[name] != digest('a') || f.loaded[name] {
		t.Fatalf("rollback: %+v %v, models %v loaded %v", ch, err, f.models, f.loaded)
	}
	if pin, _, _ := g.pinOf(ctx, name); pin != digest('a') {
		t.Fatalf("the pin is %s after the rollback, want it moved to %s", pin, digest('a'))
	}
	// Undo with --to: the replaced version was kept.
	if ch, err := g.Rollback(ctx, "os:t", "m", digest('b')[:12]); err != nil || ch.New != digest('b') {
		t.Fatalf("rollback --to the replaced version: %+v %v", ch, err)
	}
	if err := g.Unpin(ctx, "os:t", "m"); err != nil {
		t.Fatal(err)
	}
}

func TestGovernorPrune(t *testing.T) {
	g, f := newGov(t)
	g.KeepVersions = 1
	ctx := t.Context()
	name := "registry.ollama.ai/library/m:latest"
	var last Change
	for _, c := range []byte("abcd") {
		f.pulls[name] = digest(c)
		ch, err := g.Pull(ctx, "os:t", "m", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		last = ch
	}
	kept, err := g.kept(ctx, name)
	if err != nil || len(kept) != 1 || kept[0].Digest != digest('c') {
		t.Fatalf("kept after 4 pulls with keep_versions 1: %+v %v", kept, err)
	}
	if len(last.Pruned) != 1 {
		t.Fatalf("the last pull pruned %v, want one version", last.Pruned)
	}
	list, err := g.List(ctx)
	if err != nil || len(list) != 1 || list[0].Versions != 1 || !list[0].Allowed {
		t.Fatalf("list = %+v %v", list, err)
	}
	if err := g.Remove(ctx, "os:t", "m"); err != nil || len(f.models) != 0 {
		t.Fatalf("remove: %v, left %v", err, f.models)
	}
	if err := g.Remove(ctx, "os:t", "m"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove of a removed model: %v", err)
	}
}
