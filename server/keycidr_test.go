package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/warden-llm/warden/safety/keys"
)

// Per-key client networks: the server listens on 127.0.0.1 and clients
// dial from 127.0.0.2 and 127.0.0.3, standing in for two LAN hosts.

// fromAddr is an HTTP client whose connections leave from source address src.
func fromAddr(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// sendFrom sends a request from src, with an optional X-Forwarded-For.
func sendFrom(t *testing.T, src, method, url, key, xff, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := fromAddr(src).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

type refusalLog struct {
	mu   sync.Mutex
	list []string // "key ip status"
}

func (r *refusalLog) add(key, ip string, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, key+" "+ip+" "+http.StatusText(status))
}

func (r *refusalLog) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.list...)
}

// TestKeyAllowCIDRs: a key limited to 127.0.0.2 works from there (through
// openai-go), gets 403 ip_not_allowed from 127.0.0.3 (recorded for the
// key), and X-Forwarded-For from an untrusted peer changes nothing.
func TestKeyAllowCIDRs(t *testing.T) {
	var refused refusalLog
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{OnRequestRefused: refused.add})
	id, token := k.key(t, `{"name":"lan","allow_cidrs":["127.0.0.2"],"limits":{"rpm":1000}}`)

	// Allowed host, through the SDK.
	c := openai.NewClient(option.WithBaseURL(k.ts.URL+"/v1/"), option.WithAPIKey(token),
		option.WithMaxRetries(0), option.WithHTTPClient(fromAddr("127.0.0.2")))
	got, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if err != nil || got.Choices[0].Message.Content != "hi" {
		t.Fatalf("from 127.0.0.2: %v %+v", err, got)
	}

	// Another host: 403, recorded for the key, not counted against its rpm.
	resp, body := sendFrom(t, "127.0.0.3", http.MethodGet, k.ts.URL+"/v1/models", token, "", "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"ip_not_allowed"`) {
		t.Fatalf("from 127.0.0.3: %d %s, want 403 ip_not_allowed", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Ratelimit-Remaining-Requests") != "" {
		t.Errorf("a refused address got rate-limit headers: it was counted")
	}
	if want := []string{id + " 127.0.0.3 Forbidden"}; strings.Join(refused.get(), ",") != strings.Join(want, ",") {
		t.Errorf("refusals recorded = %q, want %q", refused.get(), want)
	}

	// X-Forwarded-For naming the allowed host, from an untrusted peer: ignored.
	resp, body = sendFrom(t, "127.0.0.3", http.MethodGet, k.ts.URL+"/v1/models", token, "127.0.0.2", "")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("untrusted X-Forwarded-For: %d %s, want 403", resp.StatusCode, body)
	}
	// ... and one naming another host does not lock the allowed one out.
	if resp, body := sendFrom(t, "127.0.0.2", http.MethodGet, k.ts.URL+"/v1/models", token, "127.0.0.3", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("allowed peer with an untrusted X-Forwarded-For: %d %s, want 200", resp.StatusCode, body)
	}

	// The admin API shows, replaces and clears the list.
	resp, body = k.do(t, http.MethodPatch, "/admin/keys/"+id, k.admin, `{"allow_cidrs":["127.0.0.3/32","127.0.0.0/31"]}`)
	var kk keys.Key
	if err := json.Unmarshal([]byte(body), &kk); err != nil || resp.StatusCode != http.StatusOK ||
		strings.Join(kk.AllowCIDRs, ",") != "127.0.0.3/32,127.0.0.0/31" {
		t.Fatalf("PATCH allow_cidrs: %d %s", resp.StatusCode, body)
	}
	if resp, _ := sendFrom(t, "127.0.0.3", http.MethodGet, k.ts.URL+"/v1/models", token, "", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("after PATCH, from 127.0.0.3: %d, want 200", resp.StatusCode)
	}
	if resp, _ := sendFrom(t, "127.0.0.2", http.MethodGet, k.ts.URL+"/v1/models", token, "", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("after PATCH, from 127.0.0.2: %d, want 403", resp.StatusCode)
	}
	if resp, body := k.do(t, http.MethodPatch, "/admin/keys/"+id, k.admin, `{"allow_cidrs":[]}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"allow_cidrs":[]`) {
		t.Fatalf("PATCH clearing allow_cidrs: %d %s", resp.StatusCode, body)
	}
	if resp, _ := sendFrom(t, "127.0.0.2", http.MethodGet, k.ts.URL+"/v1/models", token, "", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("after clearing, from 127.0.0.2: %d, want 200", resp.StatusCode)
	}

	// Bad networks are refused, naming the field.
	for _, tt := range []struct{ method, path, body string }{
		{http.MethodPost, "/admin/keys", `{"name":"bad","allow_cidrs":["10.0.0.0/33"]}`},
		{http.MethodPost, "/admin/keys", `{"name":"bad","allow_cidrs":["office"]}`},
		{http.MethodPatch, "/admin/keys/" + id, `{"allow_cidrs":["10.0.0.0/33"]}`},
		{http.MethodPatch, "/admin/keys/" + id, `{"allow_cidrs":"10.0.0.0/8"}`},
	} {
		resp, body := k.do(t, tt.method, tt.path, k.admin, tt.body)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "panic") {
			t.Errorf("%s %s %s: %d %s, want 400", tt.method, tt.path, tt.body, resp.StatusCode, body)
		}
	}
}

// TestKeyAllowCIDRsTrustedProxy: behind a trusted proxy (127.0.0.1), the
// forwarded address decides, whatever the peer.
func TestKeyAllowCIDRsTrustedProxy(t *testing.T) {
	k := newKeyed(t, &fakeBackend{chat: scripted("hi")}, Config{TrustedProxies: []string{"127.0.0.1"}})
	_, token := k.key(t, `{"name":"lan","allow_cidrs":["192.0.2.0/24"]}`)
	for _, tt := range []struct {
		xff  string
		want int
	}{
		{"192.0.2.10", http.StatusOK},
		{"198.51.100.7", http.StatusForbidden},
		{"", http.StatusForbidden}, // the proxy itself is not in the list
	} {
		if resp, body := sendFrom(t, "127.0.0.1", http.MethodGet, k.ts.URL+"/v1/models", token, tt.xff, ""); resp.StatusCode != tt.want {
			t.Errorf("via the proxy, X-Forwarded-For %q: %d %s, want %d", tt.xff, resp.StatusCode, body, tt.want)
		}
	}
	// A peer that is not the proxy cannot claim the address.
	if resp, _ := sendFrom(t, "127.0.0.2", http.MethodGet, k.ts.URL+"/v1/models", token, "192.0.2.10", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("untrusted peer forwarding an allowed address: %d, want 403", resp.StatusCode)
	}
}
