package ollama

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAttach(t *testing.T) {
	for _, bad := range []string{"", "localhost:11434", "ftp://host:1", "http://", "http://[::1"} {
		if _, err := Attach(bad); err == nil {
			t.Errorf("Attach(%q): no error", bad)
		}
	}
	rt, err := Attach("http://127.0.0.1:11434")
	if err != nil {
		t.Fatal(err)
	}
	if got := rt.URL().String(); got != "http://127.0.0.1:11434" {
		t.Errorf("URL %q", got)
	}
	if rt.Supervised() || rt.PGID() != 0 || rt.Restarts() != 0 || rt.Ready() != nil {
		t.Errorf("an attached runtime: supervised %v, pgid %d, restarts %d, ready %v", rt.Supervised(), rt.PGID(), rt.Restarts(), rt.Ready())
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Errorf("Close of an attached runtime: %v", err)
	}
}

// An attached backend that answers only after Warden started is waited
// for: WaitHealthy keeps probing while it is not up and returns once it
// answers, and gives up with an error at the timeout.
func TestAttachWaitsForLateBackend(t *testing.T) {
	var up atomic.Bool
	probed := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			select {
			case probed <- struct{}{}:
			default:
			}
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"version":"0.17.4"}`))
	}))
	defer srv.Close()
	rt, err := Attach(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.WaitHealthy(t.Context(), time.Minute) }()
	<-probed // the waiter found it down...
	select {
	case err := <-done:
		t.Fatalf("WaitHealthy returned %v while the backend was down", err)
	default:
	}
	up.Store(true) // ...then it comes up
	if err := <-done; err != nil {
		t.Fatalf("WaitHealthy after the backend came up: %v", err)
	}

	// Nothing listening: the wait ends at the timeout with the cause.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rt, err = Attach("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	err = rt.WaitHealthy(t.Context(), 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Errorf("WaitHealthy on a closed port: %v, want not healthy", err)
	}
}
