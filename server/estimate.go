package server

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Prompt token estimates for quota reservations. Ollama has no tokenize
// endpoint, so Warden reserves an upper bound of the string the backend
// renders: no tokenizer in use makes a token of less than one byte (the
// demo model's byte-level vocabulary makes exactly one per byte; BPE
// vocabularies make fewer), so the byte length of the text bounds its
// tokens. Counted: every text with the separator that joins text parts,
// a fixed allowance per message for the role markers a chat template
// wraps it in, the tools' JSON, a stated cost per image, and, once per
// request, what the model's template adds to every prompt (its default
// system prompt and its own text, from /api/show; see
// catalog.promptOverhead). The reservation is settled with the backend's
// real counts, also when they are higher, so an overestimate costs
// nothing once a request ends and an underestimate is still paid for.
const (
	perMessageTokens = 16
	perImageTokens   = 2048
	perRequestTokens = 16
)

func estimateChat(r *chatRequest) int64 {
	n := int64(perRequestTokens)
	for _, m := range r.Messages {
		n += perMessageTokens + int64(len(m.Role)+len(m.Name)+len(m.ToolCallID)+len(m.Reasoning))
		switch c := m.Content.(type) {
		case string:
			n += int64(len(c))
		case []any:
			for _, p := range c {
				part, _ := p.(map[string]any)
				if t, ok := part["text"].(string); ok {
					n += int64(len(t) + len(textSeparator))
				}
				if part["type"] == "image_url" {
					// An image part outside an all-text array splits the
					// message upstream: one more message's markers.
					n += perImageTokens + perMessageTokens
				}
			}
		}
		for _, tc := range m.ToolCalls {
			n += int64(len(tc.ID) + len(tc.Function.Name) + len(tc.Function.Arguments) + perMessageTokens)
		}
	}
	if len(r.Tools) > 0 {
		// The template renders the tools' JSON into the prompt.
		b, _ := json.Marshal(r.Tools)
		n += int64(len(b)) + perMessageTokens
	}
	return n
}

func estimateText(texts ...string) int64 {
	n := int64(perRequestTokens)
	for _, t := range texts {
		n += int64(len(t)) + 2
	}
	return n
}

// errCapped ends a backend call when the key's character cap is reached.
var errCapped = errors.New("output character cap reached")

// charCap counts output characters (runes) against a key's limit.
type charCap struct {
	limit, used int64
}

// take returns the part of s that fits and whether the cap is now reached.
// A zero limit never caps.
func (c *charCap) take(s string) (string, bool) {
	if c.limit <= 0 {
		return s, false
	}
	left := c.limit - c.used
	n := int64(utf8.RuneCountInString(s))
	if n < left {
		c.used += n
		return s, false
	}
	// Cut at the rune boundary where the cap falls.
	i, k := 0, int64(0)
	for k < left && i < len(s) {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		k++
	}
	c.used = c.limit
	return s[:i], true
}

// streamOn asks the backend to stream; truncateOff asks it not to
// truncate the prompt. Shared by every request (nothing writes them).
var streamOn, truncateOff = true, false
