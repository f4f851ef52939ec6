package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
)

var t0 = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// enqueue commits messages numbered from..to-1 in one transaction.
func enqueue(t *testing.T, db *store.DB, topic string, from, to int) {
	t.Helper()
	if err := enqueueErr(db, topic, from, to); err != nil {
		t.Fatal(err)
	}
}

func enqueueErr(db *store.DB, topic string, from, to int) error {
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var msgs []Message
	for i := from; i < to; i++ {
		msgs = append(msgs, Message{Topic: topic, Body: body(i), Time: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := EnqueueTx(ctx, tx, msgs...); err != nil {
		tx.Rollback()
		return fmt.Errorf("EnqueueTx: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func body(n int) []byte { return fmt.Appendf(nil, `{"n":%d}`, n) }

// receiver is a webhook endpoint recording what it accepted.
type receiver struct {
	mu       sync.Mutex
	fail     int // answer 500 to this many more requests (-1: until told)
	requests int
	got      []wireMessage
	srv      *httptest.Server
}

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		data, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.fail != 0 {
			if r.fail > 0 {
				r.fail--
			}
			http.Error(w, "receiver down", http.StatusInternalServerError)
			return
		}
		var batch []wireMessage
		if err := json.Unmarshal(data, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.got = append(r.got, batch...)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFail(n int) {
	r.mu.Lock()
	r.fail = n
	r.mu.Unlock()
}

func (r *receiver) received() []wireMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wireMessage(nil), r.got...)
}

// distinct is the set of bodies' n received.
func (r *receiver) distinct() map[int]bool {
	seen := map[int]bool{}
	for _, m := range r.received() {
		var b struct{ N int }
		json.Unmarshal(m.Body, &b)
		seen[b.N] = true
	}
	return seen
}

func (r *receiver) sink(t *testing.T, name string) Sink {
	t.Helper()
	s, err := NewSink(SinkConfig{Name: name, Type: "webhook", URL: r.srv.URL + "/ingest", Headers: map[string]string{"Authorization": "Bearer t"}})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	return s
}

func testOptions() Options {
	return Options{Batch: 50, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Poll: 10 * time.Millisecond}
}

func start(t *testing.T, db *store.DB, sinks []Sink, opts Options) *Outbox {
	t.Helper()
	o := New(db, sinks, opts)
	if err := o.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	return o
}

func status(t *testing.T, o *Outbox) map[string]SinkStatus {
	t.Helper()
	st, err := o.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	out := map[string]SinkStatus{}
	for _, s := range st {
		out[s.Name] = s
	}
	return out
}
