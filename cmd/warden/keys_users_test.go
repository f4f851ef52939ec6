package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/safety/store"
)

// TestKeysUsersCLI: a delegate key made with per-user limits, its users
// listed from the usage a server wrote, a user blocked and unblocked with
// an admin event in the chain each time, and end users in audit tail and
// export.
func TestKeysUsersCLI(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	out, err := runCLI(t, dir, "keys", "create", "--name", "webui", "--scopes", "chat,delegate",
		"--user-tokens-per-day", "5000", "--user-rpm", "10", "--require-user", "true", "--json")
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("keys create --json: %q (%v)", out, err)
	}
	id := created.ID
	out, err = runCLI(t, dir, "keys", "set-limits", id, "--user-concurrency", "2", "--user-tpm", "900", "--json")
	if err != nil {
		t.Fatalf("keys set-limits: %v", err)
	}
	var k keys.Key
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	if l := k.Limits; l.UserTokensPerDay != 5000 || l.UserRPM != 10 || l.UserConcurrency != 2 || l.UserTPM != 900 || k.RequireUser == nil || !*k.RequireUser {
		t.Fatalf("key after set-limits = %+v, want the user limits kept and added, require_user true", k)
	}
	if _, err := runCLI(t, dir, "keys", "set-limits", id, "--user-rpm", "-1"); err == nil || !strings.Contains(err.Error(), "user-rpm") {
		t.Fatalf("negative --user-rpm: %v", err)
	}
	if _, err := runCLI(t, dir, "keys", "set-limits", id, "--require-user", "maybe"); err == nil {
		t.Fatal("--require-user maybe accepted")
	}

	// What a server wrote: alice's and bob's charges, and one record pair
	// each for alice.
	db, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lim := quota.New(db, quota.Config{})
	for user, n := range map[string]int64{"alice": 120, "bob": 7} {
		r, err := lim.AdmitUser(ctx, id, quota.Limits{}, user, quota.Limits{}, n, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Settle(ctx, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := lim.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(db, audit.Config{DataDir: dir})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []audit.Kind{audit.KindRequest, audit.KindCompletion} {
		if _, err := w.Append(ctx, audit.Record{Kind: kind, KeyID: id, RequestID: "r1", EndUser: "alice smith", EndUserEmail: "alice@example.org"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, err = runCLI(t, dir, "keys", "users", id, "--json")
	if err != nil {
		t.Fatalf("keys users --json: %v", err)
	}
	var listed struct {
		Users []quota.UserUsage `json:"users"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, u := range listed.Users {
		got[u.User] = u.TokensToday
		if u.LastSeen == nil || u.TokensThisMonth != u.TokensToday {
			t.Errorf("user %+v: want last seen and the month equal to today", u)
		}
	}
	if len(got) != 2 || got["alice"] != 120 || got["bob"] != 7 {
		t.Fatalf("keys users = %v, want alice 120 and bob 7", got)
	}

	if _, err := runCLI(t, dir, "keys", "block-user", id, "bob"); err != nil {
		t.Fatalf("block-user: %v", err)
	}
	out, err = runCLI(t, dir, "keys", "users", id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"alice"`) || !lineHas(out, `"bob"`, "true") {
		t.Fatalf("keys users text:\n%s\nwant alice, and bob blocked", out)
	}
	if _, err := runCLI(t, dir, "keys", "block-user", id, "bad\x1buser"); err == nil {
		t.Fatal("block-user accepted a control character")
	}
	if _, err := runCLI(t, dir, "keys", "block-user", "nosuchkey", "bob"); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("block-user on a missing key: %v", err)
	}
	if _, err := runCLI(t, dir, "keys", "unblock-user", id, "bob"); err != nil {
		t.Fatalf("unblock-user: %v", err)
	}

	// Both changes are admin events in the chain, which still verifies.
	out, err = runCLI(t, dir, "audit", "export")
	if err != nil {
		t.Fatal(err)
	}
	var blocks, unblocks, withUser int
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var r audit.StoredRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		switch {
		case strings.Contains(string(r.Detail), keys.ActionBlockUser):
			blocks++
		case strings.Contains(string(r.Detail), keys.ActionUnblockUser):
			unblocks++
		}
		if r.EndUser == "alice smith" && r.EndUserEmail == "alice@example.org" {
			withUser++
		}
	}
	if blocks != 1 || unblocks != 1 || withUser != 2 {
		t.Fatalf("export: %d block and %d unblock events, %d records of alice; want 1, 1, 2\n%s", blocks, unblocks, withUser, out)
	}
	if !strings.Contains(out, `"end_user":"alice smith"`) {
		t.Fatalf("export does not name end_user:\n%s", out)
	}
	out, err = runCLI(t, dir, "audit", "tail", "-n", "10")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, `user="alice smith"`) != 2 {
		t.Fatalf("audit tail:\n%s\nwant user=\"alice smith\" on both records", out)
	}
	out, err = runCLI(t, dir, "audit", "tail", "--user", "alice smith")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 2 || strings.Count(out, `user="alice smith"`) != 2 {
		t.Fatalf("audit tail --user:\n%s\nwant alice's two records only", out)
	}
	if _, err := runCLI(t, dir, "audit", "verify"); err != nil {
		t.Fatalf("audit verify after end-user records and block events: %v", err)
	}
}

// lineHas reports whether one line of out holds both a and b.
func lineHas(out, a, b string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}
