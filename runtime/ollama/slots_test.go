package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// fakeOllama serves /api/chat, /api/generate and /api/ps for one model
// with a fixed number of slots. With leak set it behaves as Ollama v0.17.4
// can: a streaming chat whose client goes away keeps its slot forever.
// Unloading drops the slots with the runner, after a delay, as Ollama
// unloads in the background.
type fakeOllama struct {
	slots int
	leak  bool

	mu      sync.Mutex
	sem     chan struct{} // the loaded runner's slots
	loaded  bool
	probes  []api.GenerateRequest
	unloads int
}

func newFakeOllama(t *testing.T, slots int, leak bool) (*fakeOllama, *Client) {
	t.Helper()
	f := &fakeOllama{slots: slots, leak: leak, sem: make(chan struct{}, slots)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat", f.chat)
	mux.HandleFunc("POST /api/generate", f.generate)
	mux.HandleFunc("GET /api/ps", f.ps)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(func() *url.URL { return u }, nil)
	c.ProbeTimeout = 300 * time.Millisecond
	c.UnloadTimeout = 10 * time.Second
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return f, c
}

// acquire takes a slot of the loaded runner (loading it) or fails with ctx.
func (f *fakeOllama) acquire(ctx context.Context) (release func(), err error) {
	f.mu.Lock()
	sem := f.sem
	f.loaded = true
	f.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeOllama) chat(w http.ResponseWriter, r *http.Request) {
	var req api.ChatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	release, err := f.acquire(r.Context())
	if err != nil {
		return
	}
	n := 3
	if v, ok := req.Options["num_predict"].(float64); ok {
		n = int(v)
	}
	stream := req.Stream == nil || *req.Stream
	enc := json.NewEncoder(w)
	for range n {
		select {
		case <-r.Context().Done():
			if !stream || !f.leak {
				release()
			}
			return
		case <-time.After(2 * time.Millisecond):
		}
		if stream {
			_ = enc.Encode(api.ChatResponse{Model: req.Model, Message: api.Message{Role: "assistant", Content: "x"}})
			w.(http.Flusher).Flush()
		}
	}
	release()
	_ = enc.Encode(api.ChatResponse{Model: req.Model, Done: true, DoneReason: "length", Metrics: api.Metrics{EvalCount: n}})
}

func (f *fakeOllama) generate(w http.ResponseWriter, r *http.Request) {
	var req api.GenerateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.Prompt == "" && req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
		f.mu.Lock()
		f.unloads++
		f.mu.Unlock()
		time.AfterFunc(50*time.Millisecond, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sem = make(chan struct{}, f.slots)
			f.loaded = false
		})
		_ = json.NewEncoder(w).Encode(api.GenerateResponse{Model: req.Model, Done: true, DoneReason: "unload"})
		return
	}
	f.mu.Lock()
	f.probes = append(f.probes, req)
	f.mu.Unlock()
	release, err := f.acquire(r.Context())
	if err != nil {
		return
	}
	defer release()
	_ = json.NewEncoder(w).Encode(api.GenerateResponse{Model: req.Model, Response: ".", Done: true, DoneReason: "length"})
}

func (f *fakeOllama) ps(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var resp api.ProcessResponse
	if f.loaded {
		resp.Models = append(resp.Models, api.ProcessModelResponse{Name: "demo:latest", Model: "demo:latest"})
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (f *fakeOllama) counts() (probes, unloads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.probes), f.unloads
}

var errStop = errors.New("stop")

// abandon starts a long streaming chat and gives it up after two responses,
// the way how says: by cancelling its context or by failing its callback.
func abandon(t *testing.T, c *Client, how string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := 0
	err := c.Chat(ctx, chatRequest(100000), func(api.ChatResponse) error {
		if got++; got == 2 {
			if how == "cancel" {
				cancel()
				return nil
			}
			return errStop
		}
		return nil
	})
	want := map[string]error{"cancel": context.Canceled, "callback": errStop}[how]
	if !errors.Is(err, want) {
		t.Fatalf("abandoned chat returned %v, want %v", err, want)
	}
}

func chatRequest(numPredict int) *api.ChatRequest {
	return &api.ChatRequest{
		Model:     "demo",
		Messages:  []api.Message{{Role: "user", Content: "hi"}},
		Stream:    &streamOn,
		Options:   map[string]any{"num_predict": numPredict, "num_ctx": 2048},
		KeepAlive: &api.Duration{Duration: time.Hour},
	}
}

// next runs a short chat that must get a slot well within patience.
func next(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	var last api.ChatResponse
	if err := c.Chat(ctx, chatRequest(3), func(r api.ChatResponse) error { last = r; return nil }); err != nil {
		t.Fatalf("chat after an abandoned stream: %v", err)
	}
	if !last.Done || last.EvalCount != 3 {
		t.Errorf("last response = done %v, %d tokens; want done, 3", last.Done, last.EvalCount)
	}
}

func TestAbandonedStreamSlot(t *testing.T) {
	for _, tc := range []struct {
		name        string
		slots       int
		leak        bool
		how         string
		wantUnloads int
	}{
		{"freed, cancelled", 1, false, "cancel", 0},
		{"freed, callback failed", 1, false, "callback", 0},
		{"lost, cancelled", 1, true, "cancel", 1},
		{"lost, callback failed", 1, true, "callback", 1},
		{"lost, another slot free", 2, true, "cancel", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeOllama(t, tc.slots, tc.leak)
			abandon(t, c, tc.how)
			// With one slot, this hangs unless the check found the lost
			// slot and the model was unloaded before the chat went out.
			next(t, c)
			probes, unloads := f.counts()
			if probes != 1 || unloads != tc.wantUnloads {
				t.Errorf("probes, unloads = %d, %d; want 1, %d", probes, unloads, tc.wantUnloads)
			}
			if got := c.SlotResets(); got != int64(tc.wantUnloads) {
				t.Errorf("SlotResets() = %d, want %d", got, tc.wantUnloads)
			}
		})
	}
}

func TestProbeRequest(t *testing.T) {
	f, c := newFakeOllama(t, 1, false)
	abandon(t, c, "cancel")
	next(t, c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.probes) != 1 {
		t.Fatalf("%d probes, want 1", len(f.probes))
	}
	p := f.probes[0]
	if p.Model != "demo" || !p.Raw || p.Prompt == "" || p.Stream == nil || *p.Stream {
		t.Errorf("probe = model %q raw %v prompt %q stream %v; want demo, raw, a prompt, not streamed", p.Model, p.Raw, p.Prompt, p.Stream)
	}
	// The runner options of the abandoned call, or Ollama would reload.
	if p.Options["num_predict"] != float64(1) || p.Options["num_ctx"] != float64(2048) {
		t.Errorf("probe options = %v, want num_predict 1 and the call's num_ctx 2048", p.Options)
	}
	if p.KeepAlive == nil || p.KeepAlive.Duration != time.Hour {
		t.Errorf("probe keep_alive = %v, want the call's 1h", p.KeepAlive)
	}
}

func TestNoSlotCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *Client)
	}{
		{"completed stream", func(t *testing.T, c *Client) { next(t, c) }},
		{"cancelled before sending", func(t *testing.T, c *Client) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := c.Chat(ctx, chatRequest(3), func(api.ChatResponse) error { return nil }); !errors.Is(err, context.Canceled) {
				t.Errorf("Chat = %v, want context.Canceled", err)
			}
		}},
		{"not streamed, cancelled", func(t *testing.T, c *Client) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
			defer cancel()
			req := chatRequest(100000)
			req.Stream = &streamOff
			if err := c.Chat(ctx, req, func(api.ChatResponse) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Chat = %v, want context.DeadlineExceeded", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeOllama(t, 1, true)
			tc.run(t, c)
			// Close waits for a check, had one started.
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if probes, _ := f.counts(); probes != 0 {
				t.Errorf("%d probes, want 0", probes)
			}
		})
	}
}

func TestCloseStopsSlotCheck(t *testing.T) {
	f, c := newFakeOllama(t, 1, true)
	c.ProbeTimeout = time.Hour
	abandon(t, c, "cancel")
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close with a check running: %v", err)
	}
	if _, unloads := f.counts(); unloads != 0 || c.SlotResets() != 0 {
		t.Errorf("unloads %d, resets %d after Close; want 0, 0", unloads, c.SlotResets())
	}
}
