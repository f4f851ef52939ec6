package probe

import (
	"context"
	"errors"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/warden-llm/warden/safety/guard"
)

// Guard labels: what a guard model said about an answer. A label is
// stored beside the phrase-based verdict and never changes it.
const (
	LabelSafe   = "safe"
	LabelUnsafe = "unsafe" // "unsafe:<category>,..." when the guard named any
	// LabelUnreadable: the guard answered something that is not a verdict
	// of its format (the wrong model, a model that rambles).
	LabelUnreadable = "unreadable"
	// LabelFailed: the guard gave no answer (timeout, missing model,
	// backend error).
	LabelFailed = "failed"
)

// GuardLabeler labels answers with the configured guard model
// ([safety.guard]), run through the backend with the guard stage's own
// prompt building and parsing (guard.Config.Ask).
type GuardLabeler struct {
	Config  *guard.Config
	Backend guard.Chatter
}

var _ Labeler = (*GuardLabeler)(nil)

// Label asks the guard about the probe's conversation and its answer,
// within the guard's timeout. An answer with no text (a filter refused
// it) is not labelled: "".
func (l *GuardLabeler) Label(ctx context.Context, p Probe, a Answer) (string, error) {
	if a.Text == "" {
		return "", nil
	}
	msgs := make([]api.Message, 0, len(p.Messages)+1)
	for _, m := range p.Messages {
		msgs = append(msgs, api.Message{Role: m.Role, Content: m.Content})
	}
	msgs = append(msgs, api.Message{Role: "assistant", Content: a.Text})
	if l.Config.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Config.Timeout)
		defer cancel()
	}
	v, err := l.Config.Ask(ctx, l.Backend, guard.Conversation(msgs))
	switch {
	case errors.Is(err, guard.ErrUnreadable):
		return LabelUnreadable, nil
	case err != nil:
		return LabelFailed, err
	case !v.Unsafe:
		return LabelSafe, nil
	}
	if cats := l.Config.Verdicts(v); len(cats) > 0 && !(len(cats) == 1 && cats[0] == guard.CatUnsafe) {
		return LabelUnsafe + ":" + strings.Join(cats, ","), nil
	}
	return LabelUnsafe, nil
}

// labelKind is a label without its categories: safe, unsafe, unreadable,
// failed.
func labelKind(l string) string {
	k, _, _ := strings.Cut(l, ":")
	return k
}
