package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/models"
	"github.com/warden-llm/warden/runtime/ollama"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/audit/audittest"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/server"
)

// TestAuditFailsClosedOnFullDisk assembles the server from its real parts
// (SQLite file, key cache, audit writer, the real Ollama child) with a
// counting proxy in front of Ollama, fills the database to a real
// SQLITE_FULL (max_page_count: chmod proves nothing for root), and checks
// that requests get 503 with nothing of an answer and no record (the
// backend call starts while the request record commits, and its failure
// cancels it: issue 17), and that service resumes when space returns.
func TestAuditFailsClosedOnFullDisk(t *testing.T) {
	ctx := t.Context()
	ollamaBin(t)
	// Under tmpRoot (0711), which the child's own user (when tests run as
	// root) can pass through to its models and home.
	tmp := func() string {
		d, err := os.MkdirTemp(tmpRoot, "failclosed-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	dir := tmp()
	db, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, token, err := (&keys.Manager{DB: db}).Create(ctx, "test", keys.Spec{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	cache := keys.NewCache(db, time.Hour, nil)
	if err := cache.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	w := audit.NewWriter(db, audit.Config{DataDir: dir})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)

	sup := ollama.NewSupervisor(ollama.Config{Bin: ollamaBin(t), DataDir: dir, ModelsDir: filepath.Join(dir, "models"),
		Isolation: ollama.IsolationLoopback}) // the test dials the child itself
	if err := sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sup.Close(ctx)
	var calls atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		// Calls that run the model; resolving the model name may read the
		// model list before the request record is committed.
		switch r.URL.Path {
		case "/api/chat", "/api/generate", "/api/embed":
			calls.Add(1)
		}
		httputil.NewSingleHostReverseProxy(sup.URL()).ServeHTTP(rw, r)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	if _, err := models.EnsureDemo(ctx, api.NewClient(sup.URL(), http.DefaultClient)); err != nil {
		t.Fatal(err)
	}

	srv, err := server.New(ollama.NewClient(func() *url.URL { return pu }, nil), server.Config{Keys: cache, Audit: w})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	if _, err := client.Chat.Completions.New(ctx, chatParams("before", 3)); err != nil {
		t.Fatalf("request before the disk fills: %v", err)
	}

	audittest.FillUntilFull(t, db, w)

	calls.Store(0)
	records := w.Stats().Records
	for _, stream := range []bool{false, true} {
		p := chatParams("while full", 3)
		var err error
		if stream {
			s := client.Chat.Completions.NewStreaming(ctx, p)
			for s.Next() {
			}
			err = s.Err()
		} else {
			_, err = client.Chat.Completions.New(ctx, p)
		}
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || apiErr.Code != "audit_unavailable" {
			t.Errorf("stream=%v on a full disk: %v, want 503 audit_unavailable", stream, err)
		}
	}
	if n := w.Stats().Records - records; n != 0 {
		t.Errorf("%d records committed while the audit trail could not be written", n)
	}
	t.Logf("%d backend calls started (and cancelled) while the audit trail could not be written", calls.Load())
	calls.Store(0)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/readyz", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz on a full disk: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}

	// Space returns: service resumes.
	w.SetMaxPageCount(1 << 30)
	if _, err := client.Chat.Completions.New(ctx, chatParams("after", 3)); err != nil {
		t.Fatalf("request after space returned: %v", err)
	}
	if calls.Load() == 0 {
		t.Error("the request after recovery did not reach the backend")
	}
	rep, err := audit.Verify(ctx, db, dir, nil)
	if err != nil || !rep.OK() {
		t.Errorf("verify after the full disk: %+v, %v", rep, err)
	}
}
