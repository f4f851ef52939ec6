package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warden-llm/warden/internal/testwait"
	"github.com/warden-llm/warden/runtime/sched"
	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/keys"
	"github.com/warden-llm/warden/safety/quota"
)

// Delegation: a key with the delegate scope names the end user of each
// request (header, else the body's user); each user is held to the key's
// per-user limits, recorded in the audit trail, and shares the key's
// slots fairly with the key's other users. Real keys and quotas over
// SQLite, a scripted backend.

// heavyPrompt answers one piece and reports a prompt of 250 tokens, so a
// request's settled charge is 251 whatever the estimate was.
func heavyPrompt(_ context.Context, _ *api.ChatRequest, fn func(api.ChatResponse) error) error {
	if err := fn(api.ChatResponse{Message: api.Message{Role: "assistant", Content: "ok"}}); err != nil {
		return err
	}
	return fn(api.ChatResponse{Done: true, DoneReason: "stop", Metrics: api.Metrics{PromptEvalCount: 250, EvalCount: 1}})
}

// chatAs sends a chat request with token and the given headers.
func chatAs(t *testing.T, k *keyed, token, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	if body == "" {
		body = `{"model":"demo","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	}
	req, err := http.NewRequest(http.MethodPost, k.ts.URL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for h, v := range headers {
		req.Header.Set(h, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func user(id string) map[string]string { return map[string]string{DefaultUserHeader: id} }

// keyUsers reads GET /admin/keys/{id}/users.
func keyUsers(t *testing.T, k *keyed, id string) map[string]quota.UserUsage {
	t.Helper()
	resp, body := k.do(t, http.MethodGet, "/admin/keys/"+id+"/users", k.admin, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("users of %s: %d %s", id, resp.StatusCode, body)
	}
	var out struct {
		Data []quota.UserUsage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]quota.UserUsage{}
	for _, u := range out.Data {
		m[u.User] = u
	}
	return m
}

func TestDelegateUserDailyBudget(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	metrics := NewMetrics()
	k := newKeyed(t, &fakeBackend{chat: heavyPrompt}, Config{Audit: aud, Metrics: metrics})
	id, token := k.key(t, `{"name":"webui","scopes":["chat","delegate"],"limits":{"tokens_per_day":2000,"user_tokens_per_day":300}}`)

	if resp, body := chatAs(t, k, token, "", user("alice")); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's first request: %d %s", resp.StatusCode, body)
	}
	// alice has 49 of 300 left: her next request is refused, for her only.
	resp, body := chatAs(t, k, token, "", user("alice"))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "end user") || !strings.Contains(body, "tokens per day") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("alice over her budget: %d %s (Retry-After %q), want 429 naming the end user's tokens per day", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, body := chatAs(t, k, token, "", user("bob")); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob while alice is over her budget: %d %s", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(metrics.rateLimited.WithLabelValues("user_tokens_per_day")); got != 1 {
		t.Errorf("warden_rate_limited_total{limit=user_tokens_per_day} = %v, want 1", got)
	}
	// The body's user names the user when the header does not.
	if resp, body := chatAs(t, k, token, `{"model":"demo","max_tokens":20,"user":"alice","messages":[{"role":"user","content":"hi"}]}`, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice named in the body: %d %s, want 429", resp.StatusCode, body)
	}
	// Without a user the request is the key's own (require_user is off).
	if resp, body := chatAs(t, k, token, "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("no user: %d %s", resp.StatusCode, body)
	}

	users := keyUsers(t, k, id)
	if users["alice"].TokensToday != 251 || users["bob"].TokensToday != 251 || users["alice"].LastSeen == nil || len(users) != 2 {
		t.Fatalf("users = %+v, want alice and bob with 251 tokens each", users)
	}
	if resp, body := k.do(t, http.MethodGet, "/admin/keys/"+id+"/usage", k.admin, ""); !strings.Contains(body, `"tokens_today":753`) {
		t.Fatalf("the key's usage counts every user and itself: %d %s", resp.StatusCode, body)
	}

	// Both records of a served request name its end user.
	aud.mu.Lock()
	defer aud.mu.Unlock()
	var alice, bob, none int
	for _, r := range aud.recs {
		switch r.EndUser {
		case "alice":
			alice++
		case "bob":
			bob++
		case "":
			none++
		}
	}
	if alice != 2 || bob != 2 || none != 2 {
		t.Fatalf("records: alice %d, bob %d, none %d; want two each (request and completion)", alice, bob, none)
	}
}

func TestDelegateThroughSDK(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: heavyPrompt}, Config{DefaultLimits: keysLimitsUserDay(300)})
	_, token := k.key(t, `{"name":"webui","scopes":["chat","delegate"]}`)
	c := k.sdk(token)
	ask := func(who string, opts ...option.RequestOption) error {
		_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:     "demo",
			MaxTokens: openai.Int(20),
			User:      openai.String(who),
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		}, opts...)
		return err
	}
	if err := ask("alice"); err != nil {
		t.Fatal(err)
	}
	err := ask("alice")
	var apiErr *openai.Error
	if !errorsAs(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's second request through the SDK: %v, want 429 ([limits.user] default of 300 a day)", err)
	}
	if err := ask("bob"); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// The header wins over the body: carol's header, alice's body.
	if err := ask("alice", option.WithHeader(DefaultUserHeader, "carol")); err != nil {
		t.Fatalf("carol by header: %v", err)
	}
}

// TestNonDelegateKeyIgnoresUsers: a key without the delegate scope cannot
// pick a quota bucket: header and body users change nothing.
func TestNonDelegateKeyIgnoresUsers(t *testing.T) {
	var events []string
	aud := &fakeAuditor{events: &events}
	k := newKeyed(t, &fakeBackend{chat: heavyPrompt}, Config{Audit: aud, RequireUser: true, DefaultLimits: keysLimitsUserDay(300)})
	id, token := k.key(t, `{"name":"plain","scopes":["chat"]}`)
	for i := range 3 {
		h := map[string]string{DefaultUserHeader: "alice", DefaultUserEmailHeader: "a@example.org"}
		if i == 2 {
			h[DefaultUserHeader] = "bad\tid" // not even validated
		}
		if resp, body := chatAs(t, k, token, `{"model":"demo","max_tokens":20,"user":"x","messages":[{"role":"user","content":"hi"}]}`, h); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d of a plain key naming a user: %d %s", i, resp.StatusCode, body)
		}
	}
	if users := keyUsers(t, k, id); len(users) != 0 {
		t.Fatalf("a plain key has users %+v", users)
	}
	aud.mu.Lock()
	defer aud.mu.Unlock()
	for _, r := range aud.recs {
		if r.EndUser != "" || r.EndUserEmail != "" {
			t.Fatalf("a plain key's record names an end user: %+v", r)
		}
	}
}

func TestDelegateUserValidation(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("ok"), embed: func(context.Context, *api.EmbedRequest) (*api.EmbedResponse, error) {
		return &api.EmbedResponse{Embeddings: [][]float32{{0.5}}, PromptEvalCount: 1}, nil
	}}, Config{RequireUser: true})
	_, token := k.key(t, `{"name":"webui","scopes":["chat","completions","embeddings","delegate"]}`)
	_, lenient := k.key(t, `{"name":"lenient","scopes":["chat","delegate"],"require_user":false}`)
	long := strings.Repeat("u", 257)
	for _, tc := range []struct {
		name    string
		token   string
		path    string
		body    string
		headers map[string]string
		status  int
		want    string
	}{
		{"header too long", token, "", "", user(long), 400, `"param":"X-OpenWebUI-User-Id"`},
		{"header with a tab", token, "", "", user("a\tb"), 400, "control characters"},
		{"body user too long", token, "", `{"model":"demo","user":"` + long + `","messages":[{"role":"user","content":"hi"}]}`, nil, 400, `"param":"user"`},
		{"body user with a newline", token, "", `{"model":"demo","user":"a\nb","messages":[{"role":"user","content":"hi"}]}`, nil, 400, `"param":"user"`},
		{"body user with an escape", token, "", `{"model":"demo","user":"a\u001b[2J","messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request_error"},
		{"body user of the wrong type", token, "", `{"model":"demo","user":7,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "user"},
		{"email header with a tab", token, "", "", map[string]string{DefaultUserHeader: "a", DefaultUserEmailHeader: "a\t@b"}, 400, DefaultUserEmailHeader},
		{"encoded name with a newline", token, "", "", map[string]string{DefaultUserHeader: "a", DefaultUserNameHeader: "a%0Ab"}, 400, DefaultUserNameHeader},
		{"name not percent-encoding", token, "", "", map[string]string{DefaultUserHeader: "a", DefaultUserNameHeader: "100% Bob"}, 200, "ok"},
		{"no user, required", token, "", "", nil, 400, "user_required"},
		{"no user on completions", token, "/v1/completions", `{"model":"demo","prompt":"hi"}`, nil, 400, "user_required"},
		{"no user on embeddings", token, "/v1/embeddings", `{"model":"demo","input":"hi"}`, nil, 400, "user_required"},
		{"user on embeddings", token, "/v1/embeddings", `{"model":"demo","input":"hi","user":"alice"}`, nil, 200, "embedding"},
		{"no user, the key does not require one", lenient, "", "", nil, 200, "ok"},
		{"at the bound", token, "", "", user(strings.Repeat("u", 256)), 200, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/v1/chat/completions"
			}
			req, _ := http.NewRequest(http.MethodPost, k.ts.URL+path, strings.NewReader(orDefault(tc.body)))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			for h, v := range tc.headers {
				req.Header[http.CanonicalHeaderKey(h)] = []string{v}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}

func orDefault(body string) string {
	if body == "" {
		return `{"model":"demo","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	}
	return body
}

func TestBlockUserAdminAPI(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("ok")}, Config{})
	id, token := k.key(t, `{"name":"webui","scopes":["chat","delegate"]}`)
	if resp, body := k.do(t, http.MethodPost, "/admin/keys/"+id+"/block-user", k.admin, `{"user":"mallory"}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"blocked_users":["mallory"]`) {
		t.Fatalf("block: %d %s", resp.StatusCode, body)
	}
	resp, body := chatAs(t, k, token, "", user("mallory"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "user_blocked") {
		t.Fatalf("blocked user: %d %s, want 403 user_blocked", resp.StatusCode, body)
	}
	if resp, body := chatAs(t, k, token, "", user("alice")); resp.StatusCode != http.StatusOK {
		t.Fatalf("another user of the key: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct{ path, body, want string }{
		{"/admin/keys/" + id + "/block-user", `{}`, "missing_required_parameter"},
		{"/admin/keys/" + id + "/block-user", `{"user":"a\nb"}`, "invalid_value"},
		{"/admin/keys/nosuchkey/block-user", `{"user":"a"}`, "key_not_found"},
	} {
		if resp, body := k.do(t, http.MethodPost, tc.path, k.admin, tc.body); resp.StatusCode/100 != 4 || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s %s: %d %s, want a 4xx with %s", tc.path, tc.body, resp.StatusCode, body, tc.want)
		}
	}
	if resp, body := k.do(t, http.MethodPost, "/admin/keys/"+id+"/unblock-user", k.admin, `{"user":"mallory"}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"blocked_users":[]`) {
		t.Fatalf("unblock: %d %s", resp.StatusCode, body)
	}
	if resp, body := chatAs(t, k, token, "", user("mallory")); resp.StatusCode != http.StatusOK {
		t.Fatalf("unblocked user: %d %s", resp.StatusCode, body)
	}
	// Per-user limits are set and read through the admin API.
	if resp, body := k.do(t, http.MethodPatch, "/admin/keys/"+id, k.admin, `{"user_rpm":1,"user_concurrency":2,"require_user":true}`); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, `"user_rpm":1`) || !strings.Contains(body, `"user_concurrency":2`) || !strings.Contains(body, `"require_user":true`) {
		t.Fatalf("patch user limits: %d %s", resp.StatusCode, body)
	}
	// user_rpm 1: alice's second request this minute is refused.
	if resp, body := chatAs(t, k, token, "", user("alice")); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's first request under user_rpm 1: %d %s", resp.StatusCode, body)
	}
	if resp, body := chatAs(t, k, token, "", user("alice")); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "end user") {
		t.Fatalf("alice over her requests per minute: %d %s", resp.StatusCode, body)
	}
	if resp, body := chatAs(t, k, token, "", user("zed")); resp.StatusCode != http.StatusOK {
		t.Fatalf("zed: %d %s", resp.StatusCode, body)
	}
	if resp, body := chatAs(t, k, token, "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no user with require_user set on the key: %d %s", resp.StatusCode, body)
	}
	if users := keyUsers(t, k, id); users["alice"].LastSeen == nil || users["zed"].TokensToday == 0 {
		t.Fatalf("users %+v", users)
	}
}

// TestDelegateUsersShareSlotsFairly: one slot; a heavy user of a delegate
// key queues many requests, then a light user of the same key queues a
// few: the light user's are dispatched in turn with the heavy user's, not
// after them.
func TestDelegateUsersShareSlotsFairly(t *testing.T) {
	b, step, dispatched := steppedBackend()
	q := sched.New(sched.Config{Slots: func(string) int { return 1 }, MaxQueue: -1, MaxQueuePerKey: -1})
	k := newKeyed(t, b, Config{Queue: q})
	_, token := k.key(t, `{"name":"webui","scopes":["chat","delegate"]}`)
	var wg sync.WaitGroup
	send := func(who string) {
		defer wg.Done()
		body := `{"model":"demo","max_tokens":2000,"messages":[{"role":"user","content":"` + who + `"}]}`
		if resp, out := chatAs(t, k, token, body, user(who)); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", who, resp.StatusCode, out)
		}
	}
	wg.Add(1)
	go send("first") // takes the slot and holds it
	testwait.For(t, "the first request on the slot", func() bool { return q.Stats().Models["demo:latest"].InFlight == 1 })
	const heavy, light = 8, 3
	for range heavy {
		wg.Add(1)
		go send("heavy")
	}
	testwait.For(t, "the heavy user's requests queued", func() bool { return q.Stats().Models["demo:latest"].Queued == heavy })
	for range light {
		wg.Add(1)
		go send("light")
	}
	testwait.For(t, "every request queued", func() bool { return q.Stats().Models["demo:latest"].Queued == heavy+light })
	for range heavy + light + 1 {
		step <- struct{}{}
	}
	wg.Wait()
	// The light user's three requests are among the first seven dispatched
	// from the queue (alternating with the heavy user's), not the last three.
	order := dispatched()
	got := 0
	for _, who := range order[1:7] {
		if who == "light" {
			got++
		}
	}
	if got != light {
		t.Errorf("light requests in the first 6 dispatches: %d, want %d; order %v", got, light, order)
	}
}

func keysLimitsUserDay(n int64) keys.Limits { return keys.Limits{UserTokensPerDay: n} }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestDelegateEndUserInAuditRows: with the real audit writer over SQLite,
// both records of a delegate request hold the end user, e-mail and name
// from the headers, streamed or not, and the chain verifies.
func TestDelegateEndUserInAuditRows(t *testing.T) {
	ctx := t.Context()
	w, db, dir := realAudit(t)
	k := newKeyed(t, &fakeBackend{chat: scripted("o", "k")}, Config{Audit: w})
	_, token := k.key(t, `{"name":"webui","scopes":["chat","delegate"]}`)
	// Open WebUI percent-encodes the name (Python's quote, spaces kept).
	h := map[string]string{DefaultUserHeader: "u-17", DefaultUserEmailHeader: "zoe@example.org", DefaultUserNameHeader: "Zo%C3%AB Smith"}
	for _, stream := range []string{"false", "true"} {
		body := `{"model":"demo","max_tokens":5,"stream":` + stream + `,"messages":[{"role":"user","content":"hi"}]}`
		if resp, out := chatAs(t, k, token, body, h); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream=%s: %d %s", stream, resp.StatusCode, out)
		}
	}
	recs, err := audit.Query(ctx, db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[audit.Kind]int{}
	for _, r := range recs {
		if r.Kind != audit.KindRequest && r.Kind != audit.KindCompletion {
			continue
		}
		if r.EndUser != "u-17" || r.EndUserEmail != "zoe@example.org" || r.EndUserName != "Zoë Smith" {
			t.Errorf("%s record %d: end user %q %q %q", r.Kind, r.Seq, r.EndUser, r.EndUserEmail, r.EndUserName)
		}
		kinds[r.Kind]++
	}
	if kinds[audit.KindRequest] != 2 || kinds[audit.KindCompletion] != 2 {
		t.Fatalf("records by kind %v, want two requests and two completions", kinds)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(ctx, db, dir, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep.Break, err)
	}
}
