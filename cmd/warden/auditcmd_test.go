package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/store"
)

// adminReads returns the seqs named by the audit_text_read admin records.
func adminReads(t *testing.T, db *store.DB) []int64 {
	t.Helper()
	recs, err := audit.Query(context.Background(), db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, r := range recs {
		if r.Kind != audit.KindAdmin {
			continue
		}
		var d struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
			Detail struct {
				Seq int64 `json:"seq"`
			} `json:"detail"`
		}
		if err := json.Unmarshal(r.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.Action == "audit_text_read" {
			if !strings.HasPrefix(d.Actor, "os:") {
				t.Errorf("admin record actor = %q, want os:<user>", d.Actor)
			}
			seqs = append(seqs, d.Detail.Seq)
		}
	}
	return seqs
}

// TestAuditText: `warden audit text ID` prints the stored text of one
// record and appends an admin record of the read; an unknown record,
// purged text and a bad ID are clear errors that record nothing.
func TestAuditText(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := audit.NewWriter(db, audit.Config{DataDir: dir, StoreText: audit.StoreTextFull})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rec := audit.Record{Kind: audit.KindCompletion, RequestID: "r1", KeyID: "k1", Endpoint: "/v1/chat/completions", Status: 200}
	withText, noText := rec, rec
	withText.Prompt, withText.Response = "what is 2+2?", "4\x1b[2J and \u0085more"
	seq, err := w.Append(ctx, withText)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := w.Append(ctx, noText)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	id := func(n int64) string { return strconv.FormatInt(n, 10) }

	out, err := runCLI(t, dir, "audit", "text", id(seq))
	if err != nil {
		t.Fatalf("audit text: %v", err)
	}
	const want = "prompt:\nwhat is 2+2?\nresponse:\n4\\x1b[2J and \\u0085more\n"
	if out != want {
		t.Errorf("audit text printed\n%q\nwant\n%q", out, want)
	}
	out, err = runCLI(t, dir, "audit", "text", "--json", id(seq))
	if err != nil {
		t.Fatalf("audit text --json: %v", err)
	}
	var got struct {
		Seq      int64  `json:"seq"`
		Prompt   string `json:"prompt"`
		Response string `json:"response"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Seq != seq || got.Prompt != withText.Prompt || got.Response != withText.Response {
		t.Errorf("audit text --json = %s (%v), want the stored text unescaped", out, err)
	}
	if reads := adminReads(t, db); len(reads) != 2 || reads[0] != seq || reads[1] != seq {
		t.Errorf("admin reads recorded = %v, want [%d %d]", reads, seq, seq)
	}

	for _, c := range []struct {
		name, arg, want string
	}{
		{"unknown record", "999", "no audit record 999"},
		{"no text stored", id(bare), "has no stored text"},
		{"not a number", "req_1", "want a record's seq"},
		{"zero", "0", "want a record's seq"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := runCLI(t, dir, "audit", "text", c.arg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("audit text %s: %v, want an error with %q", c.arg, err, c.want)
			}
		})
	}

	// Purged by text retention: the record stays, its text is gone.
	if _, err := audit.PurgeText(ctx, db, time.Now().AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, dir, "audit", "text", id(seq)); err == nil || !strings.Contains(err.Error(), "has no stored text") {
		t.Errorf("audit text after purge: %v, want no stored text", err)
	}
	if reads := adminReads(t, db); len(reads) != 2 {
		t.Errorf("failed reads were recorded: %v", reads)
	}
	if rep, err := audit.Verify(ctx, db, dir, nil); err != nil || !rep.OK() {
		t.Errorf("verify after audited reads: %+v, %v", rep, err)
	}
}
