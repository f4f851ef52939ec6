package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/safety/quota"
	"github.com/warden-llm/warden/server"
)

// TestE2EDelegateUsers runs `warden serve` with the real Ollama child and
// the demo model: a delegate key's end user (named in Open WebUI's header)
// spends their daily budget and is refused while another user of the same
// key is served; the budget holds across a restart (usage is read back
// from the database); `keys users` and the audit trail name the users.
func TestE2EDelegateUsers(t *testing.T) {
	w := startWarden(t, "", "")
	t.Cleanup(w.stop) // a second stop after the restart's does nothing
	id, key := createKey(t, w, "--name", "webui", "--scopes", "chat,models,delegate", "--user-tokens-per-day", "300")
	c := w.clientWith(key)
	as := func(user string) option.RequestOption { return option.WithHeader(server.DefaultUserHeader, user) }

	// alice asks until her 300 tokens a day are spent: each request is
	// charged its real prompt and output, so this ends in a few dozen.
	served := 0
	for ; served < 100; served++ {
		_, err := c.Chat.Completions.New(ctxT(t), chatParams("hello", 8), as("alice"))
		if err != nil {
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || !strings.Contains(apiErr.Message, "end user") {
				t.Fatalf("alice's request %d: %v, want 429 for the end user's budget", served+1, err)
			}
			break
		}
	}
	if served == 0 || served == 100 {
		t.Fatalf("alice was served %d requests before her budget ran out", served)
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("hello", 8), as("bob")); err != nil {
		t.Fatalf("bob while alice is over her budget: %v", err)
	}

	users := func() map[string]quota.UserUsage {
		var out struct {
			Users []quota.UserUsage `json:"users"`
		}
		if err := json.Unmarshal(w.warden(t, "keys", "users", id, "--json"), &out); err != nil {
			t.Fatal(err)
		}
		m := map[string]quota.UserUsage{}
		for _, u := range out.Users {
			m[u.User] = u
		}
		return m
	}
	waitFor(t, time.Minute, "both users' usage written", func() bool {
		u := users()
		return u["alice"].TokensToday > 0 && u["bob"].TokensToday > 0
	})

	// A restart keeps alice's spent budget: she is still refused, bob not.
	w.stop()
	w = startWarden(t, w.dataDir, "")
	t.Cleanup(w.stop)
	c = w.clientWith(key)
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("hello", 8), as("alice")); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("alice after a restart: %v, want 429", err)
	}
	if _, err := c.Chat.Completions.New(ctxT(t), chatParams("hello", 8), as("bob")); err != nil {
		t.Fatalf("bob after a restart: %v", err)
	}

	tail := string(w.warden(t, "audit", "tail", "-n", "200"))
	if !strings.Contains(tail, `user="alice"`) || !strings.Contains(tail, `user="bob"`) {
		t.Fatalf("audit tail does not name the end users:\n%s", tail)
	}
	if out := string(w.warden(t, "audit", "verify")); !strings.Contains(out, "ok") {
		t.Fatalf("audit verify: %s", out)
	}
}
