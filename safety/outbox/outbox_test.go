package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestWebhookDeliversEveryMessageInOrder(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	rcv := newReceiver(t, 0)
	o := start(t, db, []Sink{rcv.sink(t, "hook")}, testOptions())
	const n = 230
	for i := 0; i < n; i += 23 {
		enqueue(t, db, TopicAudit, i, i+23)
		o.Notify()
	}
	testwait.For(t, "all messages", func() bool { return len(rcv.received()) >= n })
	got := rcv.received()
	if len(got) != n {
		t.Fatalf("received %d messages, want exactly %d (a healthy receiver sees no duplicates)", len(got), n)
	}
	for i, m := range got {
		if want := string(body(i)); string(m.Body) != want || m.Topic != TopicAudit || m.ID != int64(i+1) {
			t.Fatalf("message %d = {id %d, %s, %s}, want {id %d, audit, %s}", i, m.ID, m.Topic, m.Body, i+1, want)
		}
		if want := t0.Add(time.Duration(i) * time.Second); !m.Time.Equal(want) {
			t.Fatalf("message %d time = %v, want %v", i, m.Time, want)
		}
	}
	testwait.For(t, "cursor at the end", func() bool { return status(t, o)["hook"].Delivered == n })
	if st := status(t, o)["hook"]; st.Pending != 0 || st.Lag != 0 || st.LastSuccess.IsZero() || st.LastError != "" {
		t.Errorf("status after delivery = %+v, want nothing pending, a success, no error", st)
	}
}

func TestWebhookRetriesUntilReceiverRecovers(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	rcv := newReceiver(t, 7) // the first 7 requests get a 500
	o := start(t, db, []Sink{rcv.sink(t, "hook")}, testOptions())
	enqueue(t, db, TopicCheckpoint, 0, 120)
	o.Notify()
	testwait.For(t, "every message once or more", func() bool { return len(rcv.distinct()) == 120 })
	rcv.mu.Lock()
	requests := rcv.requests
	rcv.mu.Unlock()
	if requests < 7+3 {
		t.Errorf("receiver saw %d requests, want the 7 failed ones retried plus 3 batches", requests)
	}
	testwait.For(t, "cursor at the end", func() bool { return status(t, o)["hook"].Delivered == 120 })
	if st := status(t, o)["hook"]; st.Failures != 0 || st.LastError != "" {
		t.Errorf("status after recovery = %+v, want failures reset", st)
	}
}

func TestTwoSinksProgressIndependentlyAndLagShows(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	up, down := newReceiver(t, 0), newReceiver(t, -1)
	opts := testOptions()
	now := t0.Add(time.Hour)
	opts.Now = func() time.Time { return now }
	o := start(t, db, []Sink{up.sink(t, "up"), down.sink(t, "down")}, opts)
	enqueue(t, db, TopicAlert, 0, 80)
	o.Notify()

	testwait.For(t, "the healthy sink to finish", func() bool { return status(t, o)["up"].Delivered == 80 })
	testwait.For(t, "the failing sink to record its error", func() bool { return status(t, o)["down"].Failures >= 2 })
	st := status(t, o)
	if got := st["up"]; got.Pending != 0 || got.Lag != 0 {
		t.Errorf("up = %+v, want nothing pending", got)
	}
	d := st["down"]
	if d.Pending != 80 || d.Delivered != 0 || !d.Oldest.Equal(t0) || d.Lag != time.Hour {
		t.Errorf("down = pending %d delivered %d oldest %v lag %v, want 80, 0, %v, 1h", d.Pending, d.Delivered, d.Oldest, d.Lag, t0)
	}
	if !strings.Contains(d.LastError, "500") || d.LastErrorAt.IsZero() {
		t.Errorf("down last error = %q at %v, want the 500 and its time", d.LastError, d.LastErrorAt)
	}
	if len(down.received()) != 0 {
		t.Fatalf("failing receiver accepted messages")
	}

	down.setFail(0)
	testwait.For(t, "the recovered sink to catch up", func() bool { return len(down.distinct()) == 80 })
	testwait.For(t, "its cursor", func() bool { return status(t, o)["down"].Delivered == 80 })
	if n := len(up.received()); n != 80 {
		t.Errorf("healthy receiver got %d messages, want 80 (the other sink's retries must not resend to it)", n)
	}
}

func TestRestartResumesFromPersistedCursor(t *testing.T) {
	dir := t.TempDir()
	rcv := newReceiver(t, 0)
	db := storetest.OpenDir(t, dir)
	o := start(t, db, []Sink{rcv.sink(t, "hook")}, testOptions())
	enqueue(t, db, TopicAudit, 0, 60)
	o.Notify()
	// Wait for the cursor, not the receiver: a batch received but not yet
	// acknowledged when Close cancels its send is sent again after the
	// restart (at least once), which is not what this test is about.
	testwait.For(t, "the first 60 delivered", func() bool { return status(t, o)["hook"].Delivered == 60 })
	if err := o.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Rows enqueued while no Outbox runs (a crash, a CLI process).
	enqueue(t, db, TopicAudit, 60, 100)
	db.Close()

	db = storetest.OpenDir(t, dir)
	defer db.Close()
	start(t, db, []Sink{rcv.sink(t, "hook")}, testOptions())
	testwait.For(t, "all 100", func() bool { return len(rcv.distinct()) == 100 })
	got := rcv.received()
	if len(got) != 100 || got[60].ID != 61 {
		t.Errorf("after restart got %d messages, the 61st has id %d; want 100 and 61 (resume after the cursor)", len(got), got[60].ID)
	}
}

func TestEnqueueRefusesBadMessages(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	for name, m := range map[string]Message{
		"no topic":   {Body: []byte(`{}`), Time: t0},
		"no time":    {Topic: TopicAudit, Body: []byte(`{}`)},
		"not json":   {Topic: TopicAudit, Body: []byte(`{"a":`), Time: t0},
		"empty body": {Topic: TopicAudit, Time: t0},
	} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = EnqueueTx(ctx, tx, Message{Topic: TopicAudit, Body: []byte(`1`), Time: t0}, m)
		tx.Rollback()
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage", name, err)
		}
	}
	var n int
	db.QueryRow("SELECT count(*) FROM outbox").Scan(&n)
	if n != 0 {
		t.Errorf("outbox has %d rows after refused enqueues, want 0", n)
	}
}

func TestPruneKeepsWhatASinkStillNeeds(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	ctx := context.Background()
	enqueue(t, db, TopicAudit, 0, 10) // ids 1..10, times t0+0s..t0+9s
	db.Exec("INSERT INTO outbox_cursors (sink, delivered) VALUES ('a', 8), ('b', 4)")
	n, err := Prune(ctx, db, t0.Add(6*time.Second))
	if err != nil || n != 4 {
		t.Fatalf("Prune = %d, %v; want 4 (ids 1-4: delivered to both sinks)", n, err)
	}
	if err := RemoveSink(ctx, db, "b"); err != nil {
		t.Fatal(err)
	}
	if n, err = Prune(ctx, db, t0.Add(6*time.Second)); err != nil || n != 2 {
		t.Fatalf("Prune after RemoveSink = %d, %v; want 2 (ids 5-6: older than the cut)", n, err)
	}
	enqueue(t, db, TopicAudit, 10, 11)
	var id int64
	db.QueryRow("SELECT max(id) FROM outbox").Scan(&id)
	if id != 11 {
		t.Errorf("new id after pruning = %d, want 11 (ids are never reused)", id)
	}
}

func TestLokiPushFormat(t *testing.T) {
	var mu sync.Mutex
	var got map[string][]struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/loki/api/v1/push" || r.Header.Get("X-Scope-OrgID") != "lab" {
			http.Error(w, "bad request", 400)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := NewSink(SinkConfig{Name: "loki", Type: "webhook", URL: srv.URL + "/loki/api/v1/push", Headers: map[string]string{"X-Scope-OrgID": "lab"}})
	if err != nil {
		t.Fatal(err)
	}
	batch := []Delivery{
		{1, Message{TopicAudit, []byte(`{"n":1}`), t0}},
		{2, Message{TopicCheckpoint, []byte(`{"n":2}`), t0.Add(time.Second)}},
		{3, Message{TopicAudit, []byte(`{"n":3}`), t0.Add(2 * time.Second)}},
	}
	if err := s.Send(context.Background(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	st := got["streams"]
	if len(st) != 2 || st[0].Stream["topic"] != "audit" || st[0].Stream["service_name"] != "warden" || len(st[0].Values) != 2 || st[1].Stream["topic"] != "checkpoint" {
		t.Fatalf("streams = %+v, want audit (2 values) then checkpoint", st)
	}
	if v := st[0].Values[1]; v[0] != "1795327202000000000" || v[1] != `{"n":3}` {
		t.Errorf("value = %q, want [unix ns, body]", v)
	}
}

func TestPruneWithoutSinksDropsOldRows(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	defer db.Close()
	enqueue(t, db, TopicAudit, 0, 5)
	n, err := Prune(context.Background(), db, t0.Add(3*time.Second))
	if err != nil || n != 3 {
		t.Fatalf("Prune with no sink = %d, %v; want 3 (nobody waits for them)", n, err)
	}
}
