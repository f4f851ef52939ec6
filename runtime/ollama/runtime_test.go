package ollama

import (
	"context"
	"testing"
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
