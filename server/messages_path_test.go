package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// responsesSDKFor is an openai-go client of the server at url using key.
func responsesSDKFor(url, key string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	return &c
}

// TestAgentRoutesTakeTheChatPath: the Messages and Responses routes are
// held to the same scope, model globs, caps and limits as chat, with real
// keys and quotas on SQLite, and carry their endpoint in the audit records
// and the metrics. Refusals are each in its API's shape.
func TestAgentRoutesTakeTheChatPath(t *testing.T) {
	var (
		events []string
		got    []*api.ChatRequest
	)
	aud := &fakeAuditor{events: &events}
	m := NewMetrics()
	k := newKeyed(t, &fakeBackend{chat: func(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error {
		got = append(got, req)
		return scripted("hel", "lo")(ctx, req, fn)
	}, models: []string{"demo:latest", "other:latest"}}, Config{Audit: aud, Metrics: m})
	responsesSDK := func(key string) *openai.Client { return responsesSDKFor(k.ts.URL, key) }
	ctx := context.Background()

	// Without the chat scope: 403 in each API's shape.
	_, noChat := k.key(t, `{"name":"models-only","scopes":["models"]}`)
	_, err := anthropicSDK(k.ts.URL, noChat).Messages.New(ctx, messageParams("", "hi"))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Type() != anthropic.ErrorTypePermissionError {
		t.Fatalf("messages without chat scope: %v, want 403 permission_error", err)
	}
	_, err = responsesSDK(noChat).Responses.New(ctx, responseParams("", "hi"))
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusForbidden {
		t.Fatalf("responses without chat scope: %v, want 403", err)
	}

	// The model globs, the output cap and the requests per minute.
	_, token := k.key(t, `{"name":"agent","scopes":["chat"],"models":["demo*"],"limits":{"rpm":3,"max_output_tokens":4}}`)
	p := messageParams("", "hi")
	p.Model = "other"
	_, err = anthropicSDK(k.ts.URL, token).Messages.New(ctx, p)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound || ae.Type() != anthropic.ErrorTypeNotFoundError {
		t.Fatalf("a model outside the key's globs: %v, want 404 not_found_error", err)
	}
	if _, err := anthropicSDK(k.ts.URL, token).Messages.New(ctx, messageParams("", "hi")); err != nil {
		t.Fatal(err)
	}
	rp := responseParams("", "hi")
	rp.MaxOutputTokens = openai.Int(64)
	if _, err := responsesSDK(token).Responses.New(ctx, rp); err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.Options["num_predict"] != 4 {
			t.Errorf("request %d ran with num_predict %v, want the key's cap 4", i, r.Options["num_predict"])
		}
	}
	_, err = anthropicSDK(k.ts.URL, token).Messages.New(ctx, messageParams("", "hi"))
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || ae.Type() != anthropic.ErrorTypeRateLimitError {
		t.Fatalf("past the key's rpm: %v, want 429 rate_limit_error", err)
	}

	// The audit records and the metrics name the endpoint.
	var endpoints []string
	for _, r := range aud.recs {
		if r.Kind == "completion" {
			endpoints = append(endpoints, r.Endpoint)
			if r.Status != 200 || r.ModelDigest == "" || r.ResponseSHA256 == "" || r.TokensOut != 2 {
				t.Errorf("completion record %+v", r)
			}
		}
	}
	if strings.Join(endpoints, ",") != "POST /v1/messages,POST /v1/responses" {
		t.Errorf("completion records for %v", endpoints)
	}
	for _, ep := range []string{"/v1/messages", "/v1/responses"} {
		if n := testutil.ToFloat64(m.requests.WithLabelValues(ep, "demo:latest", "200")); n != 1 {
			t.Errorf("warden_requests_total{endpoint=%q,status=200} = %v, want 1", ep, n)
		}
	}
}
