package guard

import (
	"context"
	"strings"

	"github.com/ollama/ollama/api"
)

// Chatter runs a chat on a backend: the runtime's client, Ollama's
// api.Client, a scripted backend in tests.
type Chatter interface {
	Chat(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error) error
}

// MaxOutputTokens bounds a guard's answer: a verdict is a few tokens.
const MaxOutputTokens = 32

// Separator joins consecutive texts of one side of the conversation.
const Separator = "\n"

// Conversation is a chat as the guard model reads it: assistant messages
// as the assistant's, every other role as the user's, empty texts
// dropped and consecutive messages of one side joined.
func Conversation(msgs []api.Message) []api.Message {
	var out []api.Message
	for _, m := range msgs {
		if m.Content == "" {
			continue
		}
		role := "user"
		if m.Role == "assistant" {
			role = "assistant"
		}
		if n := len(out); n > 0 && out[n-1].Role == role {
			out[n-1].Content += Separator + m.Content
			continue
		}
		out = append(out, api.Message{Role: role, Content: m.Content})
	}
	return out
}

// Ask runs the guard model on msgs (see Conversation) through b at
// temperature 0 and reads its verdict. An answer that is not a verdict is
// ErrUnreadable; b's errors come back as they are. Ask does not bound its
// own time: ctx does.
func (c *Config) Ask(ctx context.Context, b Chatter, msgs []api.Message) (Verdict, error) {
	if c.Format == GraniteGuardian && c.Risk != "" {
		msgs = append([]api.Message{{Role: "system", Content: c.Risk}}, msgs...)
	}
	stream := false
	req := &api.ChatRequest{
		Model:    c.Model,
		Messages: msgs,
		Stream:   &stream,
		Options:  map[string]any{"temperature": 0, "num_predict": MaxOutputTokens},
	}
	var out strings.Builder
	err := b.Chat(ctx, req, func(r api.ChatResponse) error {
		if out.Len()+len(r.Message.Content) > maxVerdict {
			return ErrUnreadable
		}
		out.WriteString(r.Message.Content)
		return nil
	})
	if err != nil {
		return Verdict{}, err
	}
	return Parse(c.Format, out.String())
}
