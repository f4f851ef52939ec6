package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/warden-llm/warden/models"
)

func feed(t *testing.T, p *progressPrinter) {
	t.Helper()
	steps := []models.Progress{
		{Status: "pulling manifest"},
		{Status: "pulling 1b0d81248f43", Digest: "sha256:1b0d", Total: 4 << 20, Completed: 1 << 20},
		{Status: "pulling 1b0d81248f43", Digest: "sha256:1b0d", Total: 4 << 20, Completed: 4 << 20},
		{Status: "verifying sha256 digest"},
	}
	for _, s := range steps {
		if err := p.progress(s); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProgressPrinter: JSON mode writes one object per line, the last the
// outcome; terminal mode draws a bar per layer with bytes and says what
// changed.
func TestProgressPrinter(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressPrinterTTY(&buf, true)
	feed(t, p)
	ch := models.Change{Name: "m", Old: strings.Repeat("a", 64), New: strings.Repeat("b", 64), Changed: true, Kept: "m:warden-v-aaaaaaaaaaaa.latest"}
	if err := p.finish(ch, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	if !strings.Contains(lines[4], `"status":"success"`) || !strings.Contains(lines[4], `"kept":"m:warden-v-`) {
		t.Errorf("last line %s", lines[4])
	}
	buf.Reset()
	p = newProgressPrinterTTY(&buf, true)
	if err := p.finish(models.Change{}, errors.New("registry down")); err == nil || !strings.Contains(buf.String(), `"status":"error","error":"registry down"`) && !strings.Contains(buf.String(), `"error":"registry down","status":"error"`) {
		t.Errorf("error line %q (%v)", buf.String(), err)
	}

	buf.Reset()
	p = newProgressPrinterTTY(&buf, false)
	feed(t, p)
	if err := p.finish(ch, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"pulling manifest", "pulling 1b0d81248f43", "4.2 MB", "100%", "verifying sha256 digest", "m: aaaaaaaaaaaa -> bbbbbbbbbbbb", "rollback"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
}
