package outbox

import (
	"crypto/hmac"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestTopicFilteredSinkTakesOnlyItsTopicsAndKeepsUp(t *testing.T) {
	db := storetest.OpenDir(t, t.TempDir())
	all, alerts := newReceiver(t, 0), newReceiver(t, 0)
	opts := testOptions()
	opts.Topics = map[string][]string{"alerts": {TopicAlert}}
	o := start(t, db, []Sink{all.sink(t, "all"), alerts.sink(t, "alerts")}, opts)
	enqueue(t, db, TopicAudit, 0, 3)
	enqueue(t, db, TopicAlert, 3, 4)
	enqueue(t, db, TopicAudit, 4, 6)
	o.Notify()
	testwait.For(t, "all six at the unfiltered sink", func() bool { return len(all.received()) == 6 })
	// The alert sink's cursor passes the audit rows after its alert, so
	// it does not hold back pruning.
	testwait.For(t, "the alert sink's cursor at the last row", func() bool { return status(t, o)["alerts"].Delivered == 6 })
	got := alerts.received()
	if len(got) != 1 || got[0].Topic != TopicAlert || string(got[0].Body) != string(body(3)) {
		t.Fatalf("alert sink got %+v, want the one alert", got)
	}
	// A new alert after the skip still arrives.
	enqueue(t, db, TopicAlert, 6, 7)
	o.Notify()
	testwait.For(t, "the second alert", func() bool { return len(alerts.received()) == 2 })
}

func TestWebhookSignature(t *testing.T) {
	secret := []byte("shared secret")
	var (
		mu   sync.Mutex
		good int
		bad  []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ts, sig := r.Header.Get("X-Warden-Timestamp"), r.Header.Get("X-Warden-Signature")
		mu.Lock()
		defer mu.Unlock()
		if ts == "" || !hmac.Equal([]byte(sig), []byte("sha256="+Sign(secret, ts, b))) {
			bad = append(bad, sig)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		good++
	}))
	t.Cleanup(srv.Close)
	s, err := NewSink(SinkConfig{Name: "signed", Type: "webhook", URL: srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.OpenDir(t, t.TempDir())
	o := start(t, db, []Sink{s}, testOptions())
	enqueue(t, db, TopicAlert, 0, 3)
	o.Notify()
	testwait.For(t, "signed delivery", func() bool { mu.Lock(); defer mu.Unlock(); return good > 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("signatures that did not verify: %q", bad)
	}
	// A different secret does not produce the same signature.
	if Sign([]byte("other"), "1", []byte("x")) == Sign(secret, "1", []byte("x")) {
		t.Fatal("signature does not depend on the secret")
	}
}
