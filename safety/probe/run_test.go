package probe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"
)

// HTTPChatter reads the API's answers: a text, a filter's refusal (as an
// error or a finish reason), and failures that must become errors.
func TestHTTPChatterAnswers(t *testing.T) {
	var status int
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Request-Id", "req1")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	defer srv.Close()
	c := &HTTPChatter{BaseURL: srv.URL, Key: "k"}
	cases := []struct {
		name      string
		status    int
		body      string
		text, err string
		filtered  bool
	}{
		{"text", 200, `{"choices":[{"message":{"content":"hello"},"finish_reason":"stop"}]}`, "hello", "", false},
		{"prompt blocked", 400, `{"error":{"message":"refused","code":"content_filter"}}`, "", "", true},
		{"answer cut", 200, `{"choices":[{"message":{"content":"par"},"finish_reason":"content_filter"}]}`, "par", "", true},
		{"server error", 500, `{"error":{"message":"x","code":"backend_error"}}`, "", "status 500: backend_error", false},
		{"not JSON", 502, `<html>`, "", "status 502: answer is not JSON", false},
		{"no choices", 200, `{"choices":[]}`, "", "answer has no choices", false},
	}
	for _, tc := range cases {
		status, body = tc.status, tc.body
		a := c.Chat(t.Context(), "m", []Message{{Role: "user", Content: "hi"}}, 1)
		if a.Text != tc.text || a.Err != tc.err || a.Filtered != tc.filtered || a.RequestID != "req1" {
			t.Errorf("%s: %+v", tc.name, a)
		}
	}
}

type chatFunc func(ctx context.Context, model string, msgs []Message, seed int64) Answer

func (f chatFunc) Chat(ctx context.Context, model string, msgs []Message, seed int64) Answer {
	return f(ctx, model, msgs, seed)
}

// A probe that gets no answer within the Runner's timeout is an error;
// the run goes on to the next probe.
func TestRunnerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Load("harmful")
		if err != nil {
			t.Fatal(err)
		}
		s.Probes = s.Probes[:3]
		calls := 0
		rn := &Runner{Timeout: time.Minute, Chat: chatFunc(func(ctx context.Context, _ string, _ []Message, _ int64) Answer {
			calls++
			if calls == 2 {
				<-ctx.Done() // never answers
				return Answer{}
			}
			return Answer{Text: "I can't help with that."}
		})}
		run, err := rn.Run(t.Context(), s, "m", 1)
		if err != nil {
			t.Fatal(err)
		}
		got := []Outcome{run.Scored[0].Outcome, run.Scored[1].Outcome, run.Scored[2].Outcome}
		if got[0] != Pass || got[1] != Error || got[2] != Pass || run.Answers[1].Err != "timed out" {
			t.Errorf("outcomes %v, answer %+v", got, run.Answers[1])
		}
		if _, err := rn.Run(t.Context(), Suite{}, "m", 1); err != ErrEmptySuite {
			t.Errorf("empty suite: %v", err)
		}
	})
}
