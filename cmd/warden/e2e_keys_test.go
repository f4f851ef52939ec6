package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// createKey makes a key through the CLI, as an admin would, and returns it.
func createKey(t *testing.T, w *wardenProc, args ...string) (id, key string) {
	t.Helper()
	out := w.warden(t, append([]string{"keys", "create", "--json"}, args...)...)
	var k struct{ ID, Key string }
	if err := json.Unmarshal(out, &k); err != nil || k.ID == "" || !strings.HasPrefix(k.Key, "wdn_"+k.ID+"_") {
		t.Fatalf("keys create printed %s (%v)", out, err)
	}
	// The server learns of it within one poll interval.
	waitFor(t, time.Minute, "the server to know key "+k.ID, func() bool {
		req, _ := http.NewRequest(http.MethodGet, w.base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+k.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusUnauthorized
	})
	return k.ID, k.Key
}

func statusOf(err error) int {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

func TestE2EFirstRunKey(t *testing.T) {
	w := sharedWarden(t)
	log := w.log.String()
	if !strings.Contains(log, "admin.key") || !strings.Contains(log, "curl -H") {
		t.Errorf("first run did not print the key file and a curl line:\n%s", log)
	}
	if strings.Contains(log, w.key) {
		t.Error("the admin secret was printed to a non-terminal stdout")
	}
	// /healthz and /readyz stay open; /v1 does not.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/v1/models": 401} {
		resp, err := http.Get(w.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a key: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestE2EAuthErrorsAsTheSDKSeesThem(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	params := chatParams("Hello", 4)

	_, err := w.clientWith("wdn_nosuchkey0_AAAA").Chat.Completions.New(ctx, params)
	if statusOf(err) != http.StatusUnauthorized {
		t.Errorf("unknown key: %v, want 401", err)
	}
	_, embedOnly := createKey(t, w, "--name", "embedder", "--scopes", "embeddings")
	if _, err := w.clientWith(embedOnly).Chat.Completions.New(ctx, params); statusOf(err) != http.StatusForbidden {
		t.Errorf("key without the chat scope: %v, want 403", err)
	}
	_, otherModel := createKey(t, w, "--name", "llama-only", "--models", "llama3*")
	if _, err := w.clientWith(otherModel).Chat.Completions.New(ctx, params); statusOf(err) != http.StatusNotFound {
		t.Errorf("key for other models: %v, want 404 (as for a model that does not exist)", err)
	}
	page, err := w.clientWith(otherModel).Models.List(ctx)
	if err != nil || len(page.Data) != 0 {
		t.Errorf("models visible to a key for other models: %+v, %v; want none", page, err)
	}
	_, demoOnly := createKey(t, w, "--name", "demo-only", "--models", "warden-demo")
	if _, err := w.clientWith(demoOnly).Chat.Completions.New(ctx, params); err != nil {
		t.Errorf("key for warden-demo (canonically warden-demo:latest): %v", err)
	}

	// Every request counts against rpm: createKey's GET /v1/models (the
	// one that found the key) is the first of the minute's two.
	_, slow := createKey(t, w, "--name", "slow", "--rpm", "2")
	var resp *http.Response
	if _, err := w.clientWith(slow).Chat.Completions.New(ctx, params, option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Ratelimit-Limit-Requests") != "2" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("rate-limit headers: %v", resp.Header)
	}
	_, err = w.clientWith(slow).Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Response.Header.Get("Retry-After") == "" {
		t.Errorf("third request in a minute at rpm 2: %v, want 429 with Retry-After", err)
	}
}

func TestE2ETokenBudget(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	_, key := createKey(t, w, "--name", "budget", "--tokens-per-day", "100")
	c := w.clientWith(key)

	// Stated max_tokens the budget cannot cover: 429, as OpenAI does.
	if _, err := c.Chat.Completions.New(ctx, chatParams("Hi", 500)); statusOf(err) != http.StatusTooManyRequests {
		t.Errorf("max_tokens over the budget: %v, want 429", err)
	}
	// No max_tokens: the default cap (2048) is lowered to what remains.
	params := chatParams("Hi", 1)
	params.MaxTokens = openai.ChatCompletionNewParams{}.MaxTokens // unset
	var resp *http.Response
	got, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	capHeader := resp.Header.Get("X-Warden-Max-Tokens")
	if capHeader == "" || got.Usage.TotalTokens > 100 {
		t.Errorf("unstated max_tokens: cap header %q, usage %+v; want a lowered cap and ≤ 100 tokens", capHeader, got.Usage)
	}
}

func TestE2ERotationWithGrace(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	id, old := createKey(t, w, "--name", "rotating")
	params := chatParams("Hi", 1)

	out := w.warden(t, "keys", "rotate", id, "--grace", "3s", "--json")
	var rotated struct{ ID, Key string }
	if err := json.Unmarshal(out, &rotated); err != nil || rotated.ID != id || rotated.Key == old {
		t.Fatalf("rotate printed %s (%v)", out, err)
	}
	var shown struct {
		GraceUntil time.Time `json:"grace_until"`
	}
	if err := json.Unmarshal(w.warden(t, "keys", "show", id, "--json"), &shown); err != nil || shown.GraceUntil.IsZero() {
		t.Fatalf("keys show: grace_until missing (%v)", err)
	}

	// Keep using the old secret across the end of the grace. A success
	// proves the server checked before the grace ended, so it must have
	// been sent before; a refusal proves it checked after, so it must have
	// been answered after.
	var ok, refused int
	waitFor(t, time.Minute, "the old secret to be refused", func() bool {
		sent := time.Now()
		_, err := w.clientWith(old).Chat.Completions.New(ctx, params)
		answered := time.Now()
		switch statusOf(err) {
		case 0:
			if err != nil {
				t.Fatal(err)
			}
			ok++
			if !sent.Before(shown.GraceUntil) {
				t.Errorf("old secret accepted for a request sent at %v, after the grace ended at %v", sent, shown.GraceUntil)
			}
			return false
		case http.StatusUnauthorized:
			refused++
			if answered.Before(shown.GraceUntil) {
				t.Errorf("old secret refused at %v, before the grace ended at %v", answered, shown.GraceUntil)
			}
			return true
		default:
			t.Fatalf("old secret: %v", err)
		}
		return false
	})
	if ok == 0 {
		t.Error("the old secret never worked during the grace")
	}
	if _, err := w.clientWith(rotated.Key).Chat.Completions.New(ctx, params); err != nil {
		t.Errorf("new secret: %v", err)
	}
	// After the grace the old secret stays refused.
	if _, err := w.clientWith(old).Chat.Completions.New(ctx, params); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("old secret after the grace: %v, want 401", err)
	}
}

func TestE2ERevokeReachesRunningServer(t *testing.T) {
	w := sharedWarden(t)
	ctx := ctxT(t)
	id, key := createKey(t, w, "--name", "doomed")
	c := w.clientWith(key)
	if _, err := c.Models.List(ctx); err != nil {
		t.Fatal(err)
	}
	w.warden(t, "keys", "revoke", id)
	waitFor(t, time.Minute, "the revoked key to be refused", func() bool {
		_, err := c.Models.List(ctx)
		return statusOf(err) == http.StatusUnauthorized
	})
}

// adminDo calls the admin API with key and decodes the JSON answer.
func adminDo(t *testing.T, w *wardenProc, key, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, w.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func TestE2EAdminAPI(t *testing.T) {
	w := sharedWarden(t)
	var created struct{ ID, Key string }
	if st := adminDo(t, w, w.key, "POST", "/admin/keys", `{"name":"via-api","scopes":["chat","models"],"limits":{"rpm":5}}`, &created); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	if st := adminDo(t, w, created.Key, "GET", "/admin/keys", "", nil); st != http.StatusForbidden {
		t.Errorf("non-admin key on /admin: %d, want 403", st)
	}
	var k struct {
		Name   string
		Limits struct{ RPM, TPM int64 }
	}
	if st := adminDo(t, w, w.key, "PUT", "/admin/keys/"+created.ID+"/limits", `{"tpm":1000}`, &k); st != 200 || k.Limits.RPM != 5 || k.Limits.TPM != 1000 {
		t.Errorf("set limits: %d %+v, want rpm kept at 5 and tpm 1000", st, k)
	}
	var rotated struct{ ID, Key string }
	if st := adminDo(t, w, w.key, "POST", "/admin/keys/"+created.ID+"/rotate", `{"grace":"0s"}`, &rotated); st != 200 || rotated.ID != created.ID || rotated.Key == created.Key {
		t.Errorf("rotate: %d %+v", st, rotated)
	}
	var usage struct {
		Usage struct {
			Day string `json:"day"`
		}
	}
	if st := adminDo(t, w, w.key, "GET", "/admin/keys/"+created.ID+"/usage", "", &usage); st != 200 || usage.Usage.Day == "" {
		t.Errorf("usage: %d %+v", st, usage)
	}
	if st := adminDo(t, w, w.key, "POST", "/admin/keys/"+created.ID+"/revoke", "", nil); st != 200 {
		t.Errorf("revoke: %d", st)
	}
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/admin/keys/nosuchkey123", ""},
		{"POST", "/admin/keys/nosuchkey123/rotate", ""},
	} {
		if st := adminDo(t, w, w.key, tt.method, tt.path, tt.body, nil); st != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", tt.method, tt.path, st)
		}
	}
	if st := adminDo(t, w, w.key, "POST", "/admin/keys", `{"name":"x","scopes":["root"]}`, nil); st != http.StatusBadRequest {
		t.Errorf("unknown scope: %d, want 400", st)
	}
	// The admin events name the admin key as the actor.
	var list struct {
		Data []struct{ ID, Name string }
	}
	adminDo(t, w, w.key, "GET", "/admin/keys", "", &list)
	var found bool
	for _, k := range list.Data {
		found = found || k.ID == created.ID
	}
	if !found {
		t.Errorf("created key missing from the list %+v", list.Data)
	}
}

// TestE2EOutputCharCap: the key's character cap ends the answer with
// "length", and the backend stops: with max_tokens 100,000 an uncancelled
// generation would outlast the client's deadline by minutes.
func TestE2EOutputCharCap(t *testing.T) {
	w := sharedWarden(t)
	_, key := createKey(t, w, "--name", "terse", "--max-output-chars", "10")
	c := w.clientWith(key)
	ctx := ctxT(t)
	resp, err := c.Chat.Completions.New(ctx, chatParams("Talk.", 100000))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; len([]rune(got)) != 10 || resp.Choices[0].FinishReason != "length" {
		t.Errorf("capped answer %q (%d chars), finish %q; want 10 chars and length", got, len([]rune(got)), resp.Choices[0].FinishReason)
	}
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("Talk.", 100000))
	var text strings.Builder
	var finish string
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Delta.Content)
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil || len([]rune(text.String())) != 10 || finish != "length" {
		t.Errorf("capped stream %q, finish %q, err %v", text.String(), finish, err)
	}
}

func TestE2EBackupWhileServing(t *testing.T) {
	w := sharedWarden(t)
	dest := t.TempDir() + "/warden-backup.db"
	out := w.warden(t, "backup", dest)
	if !strings.Contains(string(out), dest) {
		t.Errorf("backup printed %q", out)
	}
	db, err := sql.Open("sqlite3", "file:"+dest+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM keys`).Scan(&n); err != nil || n < 1 {
		t.Errorf("backup holds %d keys (%v), want the admin key at least", n, err)
	}
}
