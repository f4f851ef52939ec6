package quota

import (
	"fmt"
	"strings"
	"time"
)

// The names of the limits, as LimitError.Limit reports them.
const (
	LimitRequestsPerMinute = "requests_per_minute"
	LimitTokensPerMinute   = "tokens_per_minute"
	LimitTokensPerDay      = "tokens_per_day"
	LimitTokensPerMonth    = "tokens_per_month"
	LimitConcurrency       = "concurrency"
)

// Status is a key's rate-limit state for the x-ratelimit-* headers:
// requests come from the requests-per-minute bucket, tokens from the
// tokens-per-minute bucket. A zero limit means unlimited: omit the headers.
type Status struct {
	LimitRequests     int64
	RemainingRequests int64
	ResetRequests     time.Duration // until the bucket is full again
	LimitTokens       int64
	RemainingTokens   int64
	ResetTokens       time.Duration
}

// LimitError refuses a request over one of its key's limits (HTTP 429).
// Its message is safe to show the client.
type LimitError struct {
	// Limit names the limit hit: one of the Limit* constants. When several
	// are hit, it is the one that frees up last.
	Limit string
	// RetryAfter is how long until the request could be admitted: for the
	// per-minute buckets until they hold enough, for the day and month
	// budgets until the next UTC day or month, for concurrency 1 s.
	RetryAfter time.Duration
	// Status is the key's state when the request was refused.
	Status Status
	// User says the limit is the end user's under a delegate key, not the
	// key's own.
	User bool

	max       int64 // the limit's value
	remaining int64 // what was left of a token budget
	requested int64 // what the request needed of it
}

func (e *LimitError) Error() string {
	msg := e.message()
	if e.User {
		if strings.Contains(msg, "for this key") {
			return strings.Replace(msg, "for this key", "for this end user", 1)
		}
		return "end user " + msg
	}
	return msg
}

func (e *LimitError) message() string {
	retry := e.RetryAfter.Round(time.Second)
	if retry < e.RetryAfter {
		retry += time.Second
	}
	switch e.Limit {
	case LimitConcurrency:
		return fmt.Sprintf("too many concurrent requests for this key (limit %d); please try again in %s", e.max, retry)
	case LimitRequestsPerMinute:
		return fmt.Sprintf("rate limit reached for requests per minute (limit %d); please try again in %s", e.max, retry)
	}
	what := map[string]string{
		LimitTokensPerMinute: "tokens per minute",
		LimitTokensPerDay:    "tokens per day",
		LimitTokensPerMonth:  "tokens per month",
	}[e.Limit]
	if e.requested > e.max {
		return fmt.Sprintf("request too large for %s: it needs up to %d tokens (prompt and max_tokens) and the limit is %d; shorten the prompt or lower max_tokens", what, e.requested, e.max)
	}
	return fmt.Sprintf("rate limit reached for %s (limit %d, remaining %d, requested %d); lower max_tokens or try again in %s", what, e.max, e.remaining, e.requested, retry)
}
