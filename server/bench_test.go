package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/filter"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// BenchmarkChat measures Warden's own cost per request (decode, validate,
// convert, encode, HTTP) against a scripted backend, streamed and not.
// The A/B comparison with the real backend is `make bench`.
//
// The filtered cases run the default safety profile with the full detector
// set over the prompt and the answer: their difference from the plain ones
// is what the filters cost a request. The audited cases add the real
// audit writer on a SQLite file (both records, fsync'd): with a backend
// that answers at once they measure the records on the critical path.
// The "all" cases run every control but the audit trail's fsync: the
// filters, the real quota limiter with limits set, the scheduler's queue
// and the Prometheus metrics.
func BenchmarkChat(b *testing.B) {
	for _, c := range []struct {
		name     string
		stream   bool
		filtered bool
		audited  bool
		all      bool
	}{
		{"plain", false, false, false, false}, {"stream", true, false, false, false},
		{"plain-filtered", false, true, false, false}, {"stream-filtered", true, true, false, false},
		{"plain-all", false, true, false, true}, {"stream-all", true, true, false, true},
		{"plain-audited", false, true, true, false}, {"stream-audited", true, true, true, false},
	} {
		stream := c.stream
		b.Run(c.name, func(b *testing.B) {
			t := &testing.T{}
			cfg := Config{}
			if c.filtered {
				cfg.Filter = benchFilter(b)
			}
			if c.audited {
				cfg.Audit, _, _ = realAudit(b)
			}
			if c.all {
				benchControls(b, &cfg)
			}
			ts := newTestServer(t, &fakeBackend{chat: scriptedLikeOllama("a", "b", "c", "d", "e", "f", "g", "h")}, cfg)
			defer ts.Close()
			body := `{"model":"demo","messages":[{"role":"user","content":"Say something."}],"max_tokens":8,"temperature":0,"seed":1,"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
			benchPosts(b, ts.URL+"/v1/chat/completions", "Authorization", "Bearer good", body)
		})
	}
}

// scriptedLikeOllama answers as Ollama does: one response per piece
// when the request streams, else the whole answer in one done response
// (what a non-streamed client request costs on the real path).
func scriptedLikeOllama(pieces ...string) func(context.Context, *api.ChatRequest, func(api.ChatResponse) error) error {
	stream := scripted(pieces...)
	whole := strings.Join(pieces, "")
	return func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		if req.Stream != nil && *req.Stream {
			return stream(ctx, req, fn)
		}
		return fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: whole}, Done: true, DoneReason: "stop",
			Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: len(pieces)}})
	}
}

// realAudit is the real audit writer, started, on a SQLite file in a
// temporary data dir, closed when t ends; it returns the database and the
// dir too.
func realAudit(t testing.TB) (*audit.Writer, *store.DB, string) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := audit.NewWriter(db, audit.Config{DataDir: dir})
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	return w, db, dir
}

// benchControls sets the controls besides the filters and the audit
// trail: the real quota limiter on a SQLite file, with limits no request
// of the benchmark reaches, the scheduler and the metrics.
func benchControls(b *testing.B, cfg *Config) {
	lim := quota.New(storetest.Open(b), quota.Config{})
	b.Cleanup(func() { _ = lim.Close(context.Background()) })
	cfg.Quota = lim
	cfg.DefaultLimits = keys.Limits{RPM: 1 << 40, TPM: 1 << 50, TokensPerDay: 1 << 50, TokensPerMonth: 1 << 55, Concurrency: 1 << 20}
	cfg.Queue = sched.New(sched.Config{})
	cfg.Metrics = NewMetrics()
}

func benchFilter(b *testing.B) *filter.Engine {
	ps, err := filter.BuildProfiles(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	e, err := filter.New(filter.Config{Profiles: ps, Detectors: filter.Detectors(filter.DetectorOptions{}), Secret: []byte("k"), RepeatWindow: -1})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkAuthQuota is the per-request cost of the key and quota checks
// with the real key cache and limiter on a real SQLite file: authenticate
// a cached key, admit, settle. It reports the SQLite statements per
// request on the request's own path (the settle's write is batched by the
// limiter's writer).
func BenchmarkAuthQuota(b *testing.B) {
	ctx := context.Background()
	db := storetest.Open(b)
	m := &keys.Manager{DB: db}
	_, token, err := m.Create(ctx, "bench", keys.Spec{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	cache := keys.NewCache(db, time.Hour, nil)
	if err := cache.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	lim := quota.New(db, quota.Config{})
	defer lim.Close(ctx)
	ql := quota.Limits{RPM: 1 << 40, TPM: 1 << 50, TokensPerDay: 1 << 50, TokensPerMonth: 1 << 55, Concurrency: 1 << 20}

	run := func() {
		p, err := cache.Authenticate(token)
		if err != nil || !p.Allows(keys.ScopeChat) || !p.AllowsModel("warden-demo") {
			b.Fatal("auth failed", err)
		}
		res, err := lim.Admit(ctx, p.KeyID, ql, 100, 64, true)
		if err != nil {
			b.Fatal(err)
		}
		_ = lim.Status(p.KeyID, ql)
		_ = res.Settle(settleCtx, 10, 64)
	}
	run() // first use loads the key's usage
	start := db.Queries()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.StopTimer()
	_ = lim.Close(ctx) // wait for the batched writes before counting
	b.ReportMetric(float64(db.Queries()-start)/float64(b.N), "stmts/op")
}

// BenchmarkMessages is BenchmarkChat for Anthropic's Messages route: the
// same scripted answer, the same controls, Anthropic's wire format.
func BenchmarkMessages(b *testing.B) {
	benchRoute(b, "/v1/messages", func(stream string) string {
		return `{"model":"demo","max_tokens":8,"system":"Be brief.","messages":[{"role":"user","content":"Say something."}],"temperature":0,"stream":` + stream + `}`
	})
}

// BenchmarkResponses is BenchmarkChat for OpenAI's Responses route.
func BenchmarkResponses(b *testing.B) {
	benchRoute(b, "/v1/responses", func(stream string) string {
		return `{"model":"demo","max_output_tokens":8,"instructions":"Be brief.","input":"Say something.","temperature":0,"stream":` + stream + `}`
	})
}

func benchRoute(b *testing.B, path string, body func(stream string) string) {
	for _, c := range []struct {
		name     string
		stream   bool
		filtered bool
	}{{"plain", false, false}, {"stream", true, false}, {"plain-filtered", false, true}, {"stream-filtered", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			t := &testing.T{}
			cfg := Config{}
			if c.filtered {
				cfg.Filter = benchFilter(b)
			}
			ts := newTestServer(t, &fakeBackend{chat: scriptedLikeOllama("a", "b", "c", "d", "e", "f", "g", "h")}, cfg)
			defer ts.Close()
			payload := body(map[bool]string{true: "true", false: "false"}[c.stream])
			benchPosts(b, ts.URL+path, "x-api-key", "good", payload)
		})
	}
}

// benchPosts POSTs body to url in b's loop, with the key in header, over
// kept-alive connections, reading every answer whole; anything but 200
// ends the benchmark.
func benchPosts(b *testing.B, url, header, key, body string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	b.ResetTimer()
	// CPU time per request (server and in-process client): on a shared
	// machine the wall clock measures the neighbours too.
	cpu0 := proc.CPUTime()
	defer func() { b.ReportMetric(float64(proc.CPUTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/op") }()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set(header, key)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
