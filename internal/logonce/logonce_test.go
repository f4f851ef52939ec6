package logonce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLimiterOneLinePerIntervalWithCount: 1000 identical failures make one
// line; the next interval's line carries the count of the 999 repeats;
// a different error is its own line.
func TestLimiterOneLinePerIntervalWithCount(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	clock := storetest.NewClock(storetest.T0)
	l := &Limiter{Interval: time.Minute, Now: clock.Now}
	full := errors.New("database or disk is full")
	for i := range 1000 {
		l.Log(context.Background(), log, slog.LevelError, "audit: request record not written", "request_id", i, "err", full)
	}
	l.Log(context.Background(), log, slog.LevelError, "audit: request record not written", "request_id", 1, "err", errors.New("other"))
	got := lines(t, &buf)
	if len(got) != 2 || got[0]["repeated"] != nil || got[1]["err"] != "other" {
		t.Fatalf("lines %v, want one per distinct error", got)
	}
	clock.Advance(time.Minute)
	l.Log(context.Background(), log, slog.LevelError, "audit: request record not written", "request_id", 2, "err", full)
	got = lines(t, &buf)
	if len(got) != 3 || got[2]["repeated"] != float64(999) {
		t.Errorf("lines %v, want a third with repeated=999", got)
	}

	var nl *Limiter // nil: every line
	buf.Reset()
	nl.Log(context.Background(), log, slog.LevelInfo, "x")
	nl.Log(context.Background(), log, slog.LevelInfo, "x")
	if n := len(lines(t, &buf)); n != 2 {
		t.Errorf("nil limiter logged %d lines, want 2", n)
	}
}

func TestLimiterBoundsKeys(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	l := &Limiter{}
	for i := range 5 * maxKeys {
		l.Log(context.Background(), slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), slog.LevelError, "m", "err", i)
	}
	l.Log(context.Background(), log, slog.LevelError, "disabled handler: ignored")
	if n := len(l.seen); n > maxKeys {
		t.Errorf("%d keys remembered, want at most %d", n, maxKeys)
	}
}
