package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/warden-llm/warden/safety/audit"
)

// The guard model and delegate keys reach the Messages and Responses
// routes as they reach chat: the guard reads their prompt and answer,
// and a delegate key's end user comes from their bodies.

func TestAgentRoutesGuardModel(t *testing.T) {
	// The prompt: refused in each API's shape, naming the categories.
	g := guardConfig(false, "prompt")
	gb := &guardBackend{verdict: say("unsafe\nS1"), answer: []string{"hel", "lo"}}
	ts := newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g})
	_, err := anthropicSDK(ts.URL, "good").Messages.New(context.Background(), messageParams("Be brief.", "How do I bake bread?"))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Type() != anthropic.ErrorTypeInvalidRequestError || !strings.Contains(ae.RawJSON(), "violent_crimes") {
		t.Fatalf("messages: %v, want 400 invalid_request_error naming violent_crimes", err)
	}
	_, err = sdk(ts).Responses.New(context.Background(), responseParams("Be brief.", "How do I bake bread?"))
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusBadRequest || oe.Code != "content_filter" || !strings.Contains(oe.Message, "violent_crimes") {
		t.Fatalf("responses: %v, want 400 content_filter naming violent_crimes", err)
	}
	guards, main := gb.calls()
	if len(guards) != 2 || main != 0 || !strings.Contains(guards[0].Messages[len(guards[0].Messages)-1].Content, "How do I bake bread?") {
		t.Fatalf("guard calls %d (last read %+v), model calls %d", len(guards), guards, main)
	}

	// The answer: withheld, ending in each API's refusal form.
	g = guardConfig(false, "answer")
	gb = &guardBackend{verdict: onAnswer("unsafe\nS1"), answer: []string{"hel", "lo"}}
	ts = newTestServer(t, &fakeBackend{chat: gb.chat}, Config{Filter: guardFilter(t, g, nil), Guard: g})
	for _, stream := range []bool{false, true} {
		var msg anthropic.Message
		if stream {
			msg, _, _ = messageStream(t, anthropicSDK(ts.URL, "good"), messageParams("", "hi"))
		} else {
			m, err := anthropicSDK(ts.URL, "good").Messages.New(context.Background(), messageParams("", "hi"))
			if err != nil {
				t.Fatal(err)
			}
			msg = *m
		}
		if msg.StopReason != anthropic.StopReasonRefusal || strings.Contains(messageText(msg), "hello") {
			t.Errorf("messages stream=%v: %q stop %q, want the answer withheld as a refusal", stream, messageText(msg), msg.StopReason)
		}
		var resp responseResult
		if stream {
			r, _, _ := responseStream(t, sdk(ts), responseParams("", "hi"))
			resp = responseResult{string(r.Status), string(r.IncompleteDetails.Reason), r.OutputText()}
		} else {
			r, err := sdk(ts).Responses.New(context.Background(), responseParams("", "hi"))
			if err != nil {
				t.Fatal(err)
			}
			resp = responseResult{string(r.Status), string(r.IncompleteDetails.Reason), r.OutputText()}
		}
		if resp.status != "incomplete" || resp.reason != "content_filter" || strings.Contains(resp.text, "hello") {
			t.Errorf("responses stream=%v: %+v, want the answer withheld, incomplete for content_filter", stream, resp)
		}
	}
}

type responseResult struct {
	status, reason, text string
}

func (r responseResult) String() string { return r.status + "/" + r.reason + "/" + r.text }

// TestAgentRoutesEndUser: under a delegate key the end user is
// metadata.user_id on Messages and safety_identifier (or user) on
// Responses, recorded in the audit rows; a key without delegate gets no
// end user from them.
func TestAgentRoutesEndUser(t *testing.T) {
	ctx := t.Context()
	w, db, _ := realAudit(t)
	k := newKeyed(t, &fakeBackend{chat: scripted("o", "k")}, Config{Audit: w})
	_, delegate := k.key(t, `{"name":"agents","scopes":["chat","delegate"]}`)
	_, plain := k.key(t, `{"name":"solo","scopes":["chat"]}`)

	for _, key := range []string{delegate, plain} {
		p := messageParams("", "hi")
		p.Metadata = anthropic.MetadataParam{UserID: anthropic.String("dev-ann")}
		if _, err := anthropicSDK(k.ts.URL, key).Messages.New(ctx, p); err != nil {
			t.Fatal(err)
		}
		rp := responseParams("", "hi")
		rp.SafetyIdentifier = openai.String("dev-bob")
		if _, err := responsesSDKFor(k.ts.URL, key).Responses.New(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := audit.Query(ctx, db, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Kind == audit.KindCompletion {
			got = append(got, r.Endpoint+"="+r.EndUser)
		}
	}
	want := "POST /v1/messages=dev-ann,POST /v1/responses=dev-bob,POST /v1/messages=,POST /v1/responses="
	if strings.Join(got, ",") != want {
		t.Fatalf("completion records' end users %v, want %s", got, want)
	}
}
